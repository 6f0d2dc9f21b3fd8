"""An OpenAI-compatible facade: `POST /v1/chat/completions` (plain and streamed) and `GET /v1/models`.

Only the request's last user message is sent, as one turn: Burrow keeps the history itself.
`X-Burrow-Conversation: <id>` continues that conversation; without it a new one is started (earlier
messages of the request are ignored) and its id comes back in the same response header.
"""
from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from core.chat import ChatService, EventKind, Run
from server.deps import conversation_id, get_service
from server.errors import ApiProblem
from server.schemas import ChatCompletion, ModelList, problems, streams
from server.sse import KEEPALIVE, json_result, watched

router = APIRouter(prefix="/v1", tags=["openai"])
HEADER = "X-Burrow-Conversation"


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    messages: list[ChatMessage] = Field(..., min_length=1)
    stream: bool = False


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: only the text ones count
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


@router.get("/models", response_model=ModelList)
def models(service: ChatService = Depends(get_service)):
    return {"object": "list", "data": [{"id": service.settings.model, "object": "model", "created": 0,
                                        "owned_by": "burrow"}]}


def _chunk(run: Run, model: str, created: int, delta: dict[str, Any], finish: str | None = None) -> str:
    body = {"id": f"chatcmpl-{run.id}", "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


async def _stream(run: Run, model: str, keepalive: float) -> AsyncIterator[str]:
    created = int(time.time())
    yield _chunk(run, model, created, {"role": "assistant", "content": ""})
    async for event in watched(run, -1, keepalive):
        if event is None:
            yield KEEPALIVE
        elif event.kind is EventKind.DELTA:
            yield _chunk(run, model, created, {"content": event.data["text"]})
        elif event.kind is EventKind.ERROR:
            error = {"message": event.data.get("message"), "type": event.data.get("kind", "error"), "code": None}
            yield f"data: {json.dumps({'error': error}, ensure_ascii=False)}\n\n"
        elif event.kind is EventKind.DONE and event.data.get("outcome") != "failed":
            yield _chunk(run, model, created, {}, "stop")
    yield "data: [DONE]\n\n"


@router.post("/chat/completions", response_model=ChatCompletion,
             responses=streams(400, 404, 413, 422, 429, 502, 504))
def chat_completions(body: ChatCompletionRequest, request: Request, service: ChatService = Depends(get_service)):
    prompt = next((_text(m.content) for m in reversed(body.messages) if m.role == "user"), None)
    if prompt is None:
        raise ApiProblem(422, "The request has no user message to send.")
    limit = service.settings.max_message_chars
    if len(prompt) > limit:
        raise ApiProblem(413, f"The message has {len(prompt):,} characters; the limit is {limit:,}.", limit=limit)
    header = request.headers.get(HEADER)
    if header:
        cid = conversation_id(header)
        if service.conversation(cid) is None:
            raise ApiProblem(404, f"No conversation {cid!r}.")
    else:
        cid = service.new_conversation_id()
    run = service.send(cid, prompt)
    model = body.model or service.settings.model
    headers = {HEADER: cid}
    if body.stream:
        return StreamingResponse(_stream(run, model, request.app.state.keepalive), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", **headers})
    response = json_result(run, shape=lambda result: _completion(run, model, result))
    response.headers.update(headers)
    return response


def _completion(run: Run, model: str, result: dict[str, Any]) -> dict[str, Any]:
    content = (result["message"] or {}).get("content", "")
    return {"id": f"chatcmpl-{run.id}", "object": "chat.completion", "created": int(run.started_at), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}
