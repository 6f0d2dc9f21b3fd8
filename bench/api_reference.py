"""The reference for `make bench-api`: the web-server pattern of Burr's own streaming example
(apache/burr examples/streaming-fastapi), written here for the benchmark, on Burr's SQLitePersister.

As in the example: one `Application` per conversation, built on first use and kept in an
`lru_cache(maxsize=128)`; no lock around it; the reply streams with `astream_result` from an async
streaming action that opens an `AsyncOpenAI` client per call; the SSE body is bare `data:` lines
(the history first, then the deltas) with no ids, no end event and no resume. The example initializes
from its tracker; here, as the issue asks, Burr's own SQLitePersister loads and saves the state
(one connection for the process, `check_same_thread=False`, as its docs say for threads).

    BENCH_REF_DB=/tmp/ref.db OPENAI_BASE_URL=http://127.0.0.1:9999/v1 \\
        python -m uvicorn --factory bench.api_reference:create_app --port 8001
"""
from __future__ import annotations

import functools
import json
import os
from collections.abc import AsyncGenerator
from typing import Any

import openai
import pydantic
from burr.core import Application, ApplicationBuilder, State, default, when
from burr.core.action import action, streaming_action
from burr.core.persistence import SQLitePersister
from fastapi import FastAPI
from starlette.responses import StreamingResponse

TERMINAL_ACTIONS = ["chat_response", "unsafe_response"]


@action(reads=[], writes=["chat_history", "prompt"])
def process_prompt(state: State, prompt: str) -> tuple[dict, State]:
    result = {"chat_item": {"role": "user", "content": prompt, "type": "text"}}
    return result, state.update(prompt=prompt).append(chat_history=result["chat_item"])


@action(reads=["prompt"], writes=["safe"])
def check_safety(state: State) -> tuple[dict, State]:
    result = {"safe": "unsafe" not in state["prompt"]}
    return result, state.update(safe=result["safe"])


@streaming_action(reads=["prompt", "chat_history"], writes=["response"])
async def chat_response(state: State, model: str = "gpt-4o-mini") -> AsyncGenerator[tuple[dict, State | None], None]:
    messages = [{"role": item["role"], "content": item["content"]} for item in state["chat_history"]]
    client = openai.AsyncOpenAI()  # the example's _get_openai_client(): a new client per call
    stream = await client.chat.completions.create(model=model, messages=messages, stream=True)
    buffer = []
    async for chunk in stream:
        piece = chunk.choices[0].delta.content if chunk.choices else None
        if piece:
            buffer.append(piece)
            yield {"delta": piece}, None
    result = {"response": {"content": "".join(buffer), "type": "text", "role": "assistant"}}
    yield result, state.update(**result).append(chat_history=result["response"])


@streaming_action(reads=["prompt", "chat_history"], writes=["response"])
async def unsafe_response(state: State) -> AsyncGenerator[tuple[dict, State | None], None]:
    result = {"response": {"content": "I can't respond to that.", "type": "text", "role": "assistant"}}
    yield {"delta": result["response"]["content"]}, None
    yield result, state.update(**result).append(chat_history=result["response"])


def build_graph() -> Any:
    from burr.core.graph import GraphBuilder

    return (GraphBuilder()
            .with_actions(prompt=process_prompt, check_safety=check_safety, chat_response=chat_response,
                          unsafe_response=unsafe_response)
            .with_transitions(("prompt", "check_safety", default),
                              ("check_safety", "chat_response", when(safe=True)),
                              ("check_safety", "unsafe_response", default),
                              (["chat_response", "unsafe_response"], "prompt", default))
            .build())


class PromptInput(pydantic.BaseModel):
    prompt: str


def create_app() -> FastAPI:
    """The example's router as an app, on one SQLitePersister at $BENCH_REF_DB."""
    persister = SQLitePersister(os.environ.get("BENCH_REF_DB", "reference.db"),
                                connect_kwargs={"check_same_thread": False})
    persister.initialize()
    graph = build_graph()

    @functools.lru_cache(maxsize=128)
    def get_application(project_id: str, app_id: str) -> Application:
        return (ApplicationBuilder().with_graph(graph)
                .initialize_from(persister, resume_at_next_action=False, default_state={"chat_history": []},
                                 default_entrypoint="prompt")
                .with_state_persister(persister)
                .with_identifiers(app_id=app_id)
                .build())

    app = FastAPI()
    add_routes(app, get_application)
    return app


def add_routes(app: FastAPI, get_application: Any) -> None:
    """The example's three routes (and a health check for the benchmark to wait on)."""

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/create/{project_id}/{app_id}")
    async def create(project_id: str, app_id: str) -> str:
        get_application(project_id, app_id)
        return app_id

    @app.post("/response/{project_id}/{app_id}", response_class=StreamingResponse)
    async def respond(project_id: str, app_id: str, prompt: PromptInput) -> StreamingResponse:
        burr_app = get_application(project_id, app_id)
        chat_history = burr_app.state.get("chat_history", [])
        _action, container = await burr_app.astream_result(halt_after=TERMINAL_ACTIONS,
                                                           inputs={"prompt": prompt.prompt})

        async def sse() -> AsyncGenerator[str, None]:
            yield f"data: {json.dumps({'type': 'chat_history', 'value': chat_history})}\n\n"
            async for item in container:
                yield f"data: {json.dumps({'type': 'delta', 'value': item['delta']})} \n\n"

        return StreamingResponse(sse())

    @app.get("/history/{project_id}/{app_id}")
    def history(project_id: str, app_id: str) -> list[dict[str, Any]]:
        return get_application(project_id, app_id).state.get("chat_history", [])
