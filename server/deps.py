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
