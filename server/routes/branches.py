"""The conversation as a tree, under /api/v1: edit a message, regenerate a reply (each on a new
branch), the versions of each message, the branch tree, and feedback on replies. Facts of each
reply come with the messages themselves (GET .../messages)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, Field

from core.chat import ChatService, Feedback, Run
from server.deps import conversation_id, get_service, shown_branch
from server.errors import ApiProblem
from server.schemas import INT64, MessageText, SendResult, problems, streams
from server.sse import json_result, stream_response, wants_stream

router = APIRouter(prefix="/api/v1/conversations", tags=["branches"])
MessageIndex = Path(..., ge=0, le=INT64, description="The message's place in the branch's history, from 0")


class EditRequest(BaseModel):
    content: MessageText
    branch: str | None = Field(None, description="The branch shown (default: the most recent one)")


class BranchRequest(BaseModel):
    branch: str | None = None


class FeedbackRequest(BaseModel):
    branch: str | None = None
    thumbs_up: bool | None = Field(None, description="true, false, or null for no thumbs")
    comment: str | None = Field(None, max_length=2000)
    tags: list[str] = Field(default_factory=list, max_length=20)


class FeedbackOut(BaseModel):
    branch: str  # the branch whose step wrote the reply
    sequence_id: int
    message_index: int
    thumbs_up: bool | None
    comment: str | None
    tags: list[str]
    created_at: datetime
    updated_at: datetime
    annotation: dict[str, Any] = Field(description="The same, in the shape of Burr's annotations")


class VersionsOut(BaseModel):
    index: int
    current: int = Field(description="Which of `branches` is the version shown, from 0")
    branches: list[str] = Field(description="For each version (oldest first), the branch to open to see it")


class VersionsPage(BaseModel):
    branch: str
    items: list[VersionsOut]


class TreeNode(BaseModel):
    branch: str
    parent: str | None
    fork_sequence_id: int | None
    inherited: int = Field(description="Messages taken from the parent at the fork")
    length: int
    created_at: datetime
    children: list[str]


class Tree(BaseModel):
    id: str
    roots: list[str]
    branches: list[TreeNode]


def answer(request: Request, run: Run) -> Any:
    """The new branch's reply: a stream of run events, or the finished reply as JSON."""
    headers = {"Location": f"/api/v1/runs/{run.id}/events"}
    if wants_stream(request):
        return stream_response(run, -1, request.app.state.keepalive, headers)
    response = json_result(run)
    response.headers.update(headers)
    return response


@router.post("/{conversation_id}/messages/{index}/edit", response_model=SendResult,
             responses=streams(400, 404, 413, 422, 429, 502, 504))
def edit_message(body: EditRequest, request: Request, index: int = MessageIndex,
                 cid: str = Depends(conversation_id), service: ChatService = Depends(get_service)):
    """Sends a new version of user message `index` on a new branch; the old branch stays."""
    limit = service.settings.max_message_chars
    if len(body.content) > limit:
        raise ApiProblem(413, f"The message has {len(body.content):,} characters; the limit is {limit:,}.", limit=limit)
    return answer(request, service.edit(cid, shown_branch(service, cid, body.branch), index, body.content))


@router.post("/{conversation_id}/messages/{index}/regenerate", response_model=SendResult,
             responses=streams(400, 404, 422, 429, 502, 504))
def regenerate_reply(request: Request, body: BranchRequest | None = None, index: int = MessageIndex,
                     cid: str = Depends(conversation_id), service: ChatService = Depends(get_service)):
    """Asks the model again for reply `index`, on a new branch forked just before it."""
    return answer(request, service.regenerate(cid, shown_branch(service, cid, body.branch if body else None), index))


@router.get("/{conversation_id}/versions", response_model=VersionsPage, responses=problems(404, 422))
def versions(branch: str | None = None, cid: str = Depends(conversation_id),
             service: ChatService = Depends(get_service)):
    """Every message of the branch that has other versions, with the branch that shows each."""
    app_id = shown_branch(service, cid, branch)
    found = service.tree(cid).all_versions(app_id)
    return {"branch": app_id, "items": [{"index": v.index, "current": v.current, "branches": list(v.branches)}
                                        for v in found.values()]}


@router.get("/{conversation_id}/tree", response_model=Tree, responses=problems(404, 422))
def tree(cid: str = Depends(conversation_id), service: ChatService = Depends(get_service)):
    """Which branch forked from which step, and how many messages each inherited and has."""
    shown_branch(service, cid, None)
    found = service.tree(cid)
    nodes = [{"branch": s.app_id, "parent": s.parent, "fork_sequence_id": s.fork_sequence_id, "inherited": s.inherited,
              "length": s.length, "created_at": s.created_at, "children": [c.app_id for c in found.children(s.app_id)]}
             for s in found.shapes]
    return jsonable_encoder({"id": cid, "roots": [s.app_id for s in found.roots()], "branches": nodes})


def feedback_out(item: Feedback) -> dict[str, Any]:
    return jsonable_encoder({"branch": item.app_id, "sequence_id": item.sequence_id, "message_index": item.message_index,
                             "thumbs_up": item.thumbs_up, "comment": item.comment, "tags": list(item.tags),
                             "created_at": item.created_at, "updated_at": item.updated_at,
                             "annotation": item.annotation()})


@router.put("/{conversation_id}/messages/{index}/feedback", response_model=FeedbackOut | None,
            responses=problems(404, 422))
def rate_reply(body: FeedbackRequest, index: int = MessageIndex, cid: str = Depends(conversation_id),
               service: ChatService = Depends(get_service)):
    """Sets (or with no thumbs, comment or tags, clears) the rating of reply `index`; null once cleared."""
    app_id = shown_branch(service, cid, body.branch)
    saved = service.set_feedback(cid, app_id, index, body.thumbs_up, body.comment, tuple(body.tags))
    cleared = saved.thumbs_up is None and not saved.comment and not saved.tags
    return None if cleared else feedback_out(saved)


@router.get("/{conversation_id}/feedback", response_model=list[FeedbackOut], responses=problems(404, 422))
def list_feedback(cid: str = Depends(conversation_id), service: ChatService = Depends(get_service)):
    """Every rating in the conversation, all branches (an evaluation set in Burr's annotation shape)."""
    shown_branch(service, cid, None)
    return [feedback_out(item) for item in service.feedback_of_conversation(cid)]
