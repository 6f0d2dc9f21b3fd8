"""Dependencies of the routes: the app's ChatService acting for the caller, and ids checked the facade's way.

Without sign-in (BURROW_AUTH=none) every caller is the local user. Otherwise each request needs
`Authorization: Bearer <token>`, a personal API token made in the UI (the OpenAI SDK sends its API
key that way, so the token is the key there); without a valid one every route but health is 401.
"""
from __future__ import annotations

from fastapi import Request

from core.chat import ChatService, valid_id
from core.errors import InputError
from server.errors import ApiProblem


def base_service(request: Request) -> ChatService:
    """The service as nobody in particular: for health checks only."""
    return request.app.state.service


def get_service(request: Request) -> ChatService:
    """The service acting for the caller; 401 outside BURROW_AUTH=none without a valid token. The header
    is read here, not declared as an OpenAPI security scheme: without sign-in no route needs one."""
    service: ChatService = request.app.state.service
    if service.settings.auth == "none":
        return service
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    user = service.user_for_token(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
    if user is None:
        raise ApiProblem(401, "Sign in with an API token: send `Authorization: Bearer <token>` (make one in "
                              "Burrow's UI, under API tokens).", headers={"WWW-Authenticate": "Bearer"})
    return service.as_user(user)


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
