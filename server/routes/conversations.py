"""Conversations, their messages (send: SSE or JSON), retry, steps and forks, under /api/v1."""
from __future__ import annotations

import dataclasses
import threading
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, Field

from core.chat import ChatService, Run
from server.deps import conversation_id, get_service, shown_branch
from server.errors import ApiProblem
from server.schemas import (INT64, Conversation, ConversationPage, Fork, Messages, MessageText, SendResult, StepDetail,
                            Steps, problems, streams)
from server.sse import json_result, stream_response, wants_stream

router = APIRouter(prefix="/api/v1/conversations", tags=["conversations"])


class NewConversation(BaseModel):
    title: str | None = Field(None, max_length=500)


class ConversationPatch(BaseModel):
    title: str = Field(..., max_length=500)


class NewMessage(BaseModel):
    content: MessageText
    branch: str | None = None
    expected_sequence_id: int | None = Field(None, ge=-INT64, le=INT64)


class RetryRequest(BaseModel):
    branch: str | None = None


class ForkRequest(BaseModel):
    branch: str
    sequence_id: int = Field(..., ge=0, le=INT64)


def summary(item: Any, replying: bool | None = None) -> dict[str, Any]:
    body = {"id": item.partition_key, "title": item.title, "created_at": item.created_at,
            "updated_at": item.updated_at, "message_count": item.message_count, "branch": item.latest_app_id,
            "activity": item.activity, "pinned": item.pinned, "owner": item.owner}
    if replying is not None:
        body["replying"] = replying
    return body


def pending_of(request: Request, service: ChatService) -> dict[str, dict[str, Any]]:
    """The caller's conversations created here that have no message yet (a conversation is saved with
    its first one); kept per user, so nobody sees another's."""
    return request.app.state.pending.setdefault(service.user.subject, {})


def _found(service: ChatService, request: Request, cid: str) -> dict[str, Any]:
    item = service.conversation(cid)
    if item is not None:
        return summary(item, cid in service.replying([cid]))
    pending = pending_of(request, service).get(cid)
    if pending is None:
        raise ApiProblem(404, f"No conversation {cid!r}.")
    return pending


@router.post("", status_code=201, response_model=Conversation, responses=problems(400, 422))
def create_conversation(request: Request, response: Response, body: NewConversation | None = None,
                        service: ChatService = Depends(get_service)):
    now = datetime.now(timezone.utc)
    cid = service.mint_conversation_id()  # any worker on this database takes its first message
    item = {"id": cid, "title": (body.title if body else None) or "New conversation", "created_at": now,
            "updated_at": now, "message_count": 0, "branch": None, "activity": None, "replying": False,
            "owner": service.user.subject,
            "custom_title": bool(body and body.title)}
    pending_of(request, service)[cid] = item
    response.headers["Location"] = f"/api/v1/conversations/{cid}"
    return jsonable_encoder({k: v for k, v in item.items() if k != "custom_title"})


@router.get("", response_model=ConversationPage, responses=problems(403, 422))
def list_conversations(q: str = "", limit: int = Query(50, ge=1, le=200), cursor: int | None = Query(None, ge=-INT64, le=INT64),
                       everyone: bool = Query(False, description="An admin's read-only listing of every user's"),
                       service: ChatService = Depends(get_service)):
    if everyone and not service.may_list_everyone():
        raise ApiProblem(403, "Only admins (BURROW_ADMINS) can list everyone's conversations.")
    items = service.conversations(q, limit, cursor, everyone=everyone)
    replying = service.replying([item.partition_key for item in items]) if items else set()
    return jsonable_encoder({"items": [summary(item, item.partition_key in replying) for item in items],
                             "next_cursor": items[-1].cursor if len(items) == limit else None})


@router.get("/{conversation_id}", response_model=Conversation, responses=problems(404, 422))
def get_conversation(request: Request, cid: str = Depends(conversation_id),
                     service: ChatService = Depends(get_service)):
    return jsonable_encoder({k: v for k, v in _found(service, request, cid).items() if k != "custom_title"})


@router.patch("/{conversation_id}", response_model=Conversation, responses=problems(400, 404, 422))
def rename_conversation(body: ConversationPatch, request: Request, cid: str = Depends(conversation_id),
                        service: ChatService = Depends(get_service)):
    pending = pending_of(request, service).get(cid)
    if pending is not None and service.conversation(cid) is None:
        pending.update(title=body.title.strip() or "New conversation", custom_title=bool(body.title.strip()))
        return get_conversation(request, cid, service)
    _found(service, request, cid)
    service.rename(cid, body.title)
    return get_conversation(request, cid, service)


@router.delete("/{conversation_id}", status_code=204, response_class=Response, responses=problems(404, 422))
def delete_conversation(request: Request, cid: str = Depends(conversation_id),
                        service: ChatService = Depends(get_service)):
    was_pending = pending_of(request, service).pop(cid, None) is not None
    if not service.delete(cid) and not was_pending:
        raise ApiProblem(404, f"No conversation {cid!r}.")
    return Response(status_code=204)


@router.get("/{conversation_id}/messages", response_model=Messages, responses=problems(404, 422))
def get_messages(request: Request, branch: str | None = None, cid: str = Depends(conversation_id),
                 service: ChatService = Depends(get_service)):
    view = service.open(cid, branch)
    if view.sequence_id is None:
        if branch is not None or cid not in pending_of(request, service):
            raise ApiProblem(404, f"No conversation {cid!r}" + (f" with branch {branch!r}." if branch else "."))
    return jsonable_encoder({"branch": view.app_id, "sequence_id": view.sequence_id, "messages": view.messages,
                             "failed_step": view.failed_step, "failure": view.failure,
                             "run_id": view.run.id if view.run else None})  # live when read: its reply is not in messages


def _answer(request: Request, run: Run, status_code: int = 200):
    headers = {"Location": f"/api/v1/runs/{run.id}/events"}
    if wants_stream(request):
        return stream_response(run, -1, request.app.state.keepalive, headers, status_code)
    response = json_result(run, status_code)
    response.headers.update(headers)
    return response


def _title_after_first_turn(service: ChatService, cid: str, title: str, run: Run) -> None:
    def work() -> None:
        run.wait(service.settings.request_timeout * 3)
        if service.conversation(cid) is not None:
            service.rename(cid, title)

    threading.Thread(target=work, name=f"burrow-api-title-{cid[:8]}", daemon=True).start()


@router.post("/{conversation_id}/messages", response_model=SendResult,
             responses=streams(400, 404, 409, 413, 422, 429, 502, 504))
def send_message(body: NewMessage, request: Request, cid: str = Depends(conversation_id),
                 service: ChatService = Depends(get_service)):
    limit = service.settings.max_message_chars
    if len(body.content) > limit:
        raise ApiProblem(413, f"The message has {len(body.content):,} characters; the limit is {limit:,}.",
                         limit=limit)
    if not service.minted(cid) and service.conversation(cid) is None:
        raise ApiProblem(404, f"No conversation {cid!r}.")  # create it first (POST /conversations)
    expected_messages = None
    if body.expected_sequence_id is not None:
        view = service.open(cid, body.branch)
        if view.sequence_id != body.expected_sequence_id or view.run is not None:
            raise ApiProblem(409, "The conversation changed since that sequence id: reload it and send again.",
                             latest_sequence_id=view.sequence_id, branch=view.app_id)
        expected_messages = len(view.messages)
    run = service.send(cid, body.content, body.branch, expected_messages)
    pending = pending_of(request, service).pop(cid, None)
    if pending is not None and pending.get("custom_title"):
        _title_after_first_turn(service, cid, pending["title"], run)
    return _answer(request, run)


@router.post("/{conversation_id}/retry", response_model=SendResult,
             responses=streams(400, 404, 409, 422, 429, 502, 504))
def retry(request: Request, body: RetryRequest | None = None, cid: str = Depends(conversation_id),
          service: ChatService = Depends(get_service)):
    if service.conversation(cid) is None:
        raise ApiProblem(404, f"No conversation {cid!r}.")
    run = service.retry(cid, body.branch if body else None)
    if wants_stream(request):
        return _answer(request, run)
    return json_result(run, shape=_retried)


def _retried(result: dict[str, Any]) -> dict[str, Any]:
    if result["outcome"] == "nothing_to_retry":
        raise ApiProblem(409, "Nothing to retry: this conversation already has its reply.", run_id=result["run_id"])
    return result


# ---- steps and forks ------------------------------------------------------------------------------
@router.get("/{conversation_id}/steps", response_model=Steps, responses=problems(404, 422))
def list_steps(branch: str | None = None, offset: int = Query(0, ge=0, le=INT64), limit: int = Query(100, ge=1, le=500),
               cid: str = Depends(conversation_id), service: ChatService = Depends(get_service)):
    app_id = shown_branch(service, cid, branch)
    items = service.snapshots(cid, app_id, offset, limit)
    return jsonable_encoder({"branch": app_id, "total": service.snapshot_count(cid, app_id),
                             "items": [dataclasses.asdict(item) for item in items]})


@router.get("/{conversation_id}/steps/{sequence_id}", response_model=StepDetail, responses=problems(404, 422))
def get_step(sequence_id: int = Path(..., ge=-INT64, le=INT64), branch: str | None = None, cid: str = Depends(conversation_id),
             service: ChatService = Depends(get_service)):
    app_id = shown_branch(service, cid, branch)
    view = service.snapshot(cid, app_id, sequence_id)
    if view is None:
        raise ApiProblem(404, f"No step {sequence_id} in branch {app_id!r}.")
    return jsonable_encoder({"branch": app_id, **dataclasses.asdict(view.summary), "state": view.state,
                             "previous": view.previous, "diff": dataclasses.asdict(view.diff),
                             "next_action": view.next_action}, custom_encoder={bytes: repr})


@router.post("/{conversation_id}/forks", status_code=201, response_model=Fork,
             responses=problems(400, 404, 422))
def fork(body: ForkRequest, cid: str = Depends(conversation_id), service: ChatService = Depends(get_service)):
    app_id = shown_branch(service, cid, body.branch)
    if service.snapshot(cid, app_id, body.sequence_id) is None:
        raise ApiProblem(404, f"No step {body.sequence_id} in branch {app_id!r}.")
    new_branch = service.fork(cid, app_id, body.sequence_id)
    return {"id": cid, "branch": new_branch, "forked_from": {"branch": app_id, "sequence_id": body.sequence_id}}
