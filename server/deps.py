"""Dependencies of the routes: the one ChatService of the app, and ids checked the facade's way."""
from __future__ import annotations

from fastapi import Request

from core.chat import ChatService, valid_id
from core.errors import InputError
from server.errors import ApiProblem


def get_service(request: Request) -> ChatService:
    return request.app.state.service


def conversation_id(conversation_id: str) -> str:
    """A path id the facade would refuse is simply not found (404), never a 422 or a 500."""
    try:
        return valid_id(conversation_id)
    except InputError:
        raise ApiProblem(404, f"No conversation {conversation_id!r:.60}.") from None


def shown_branch(service: ChatService, cid: str, branch: str | None) -> str:
    """The branch a request is about: the given one, or the conversation's most recent; 404 otherwise."""
    item = service.conversation(cid)
    if item is None:
        raise ApiProblem(404, f"No conversation {cid!r}.")
    if branch is None:
        return item.latest_app_id
    if branch not in service.branch_ids(cid):
        raise ApiProblem(404, f"No branch {branch!r:.60} in conversation {cid!r}.")
    return branch
