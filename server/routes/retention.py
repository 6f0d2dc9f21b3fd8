"""Pins under /api/v1: a pinned conversation is listed first and never pruned by retention
(BURROW_RETENTION_DAYS, core/retention.py)."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, StrictBool

from core.chat import ChatService
from server.deps import conversation_id, get_service
from server.errors import ApiProblem
from server.routes.conversations import summary
from server.schemas import Conversation, problems

router = APIRouter(prefix="/api/v1", tags=["conversations"])


class PinRequest(BaseModel):
    pinned: StrictBool  # true or false, not "yes" or 1


@router.put("/conversations/{conversation_id}/pin", response_model=Conversation, responses=problems(404, 422),
            summary="Pin or unpin a conversation")
def pin(body: PinRequest, cid: str = Depends(conversation_id),
        service: ChatService = Depends(get_service)) -> Any:
    """Idempotent (PUT): the conversation as it is now. A conversation with no message yet is not
    saved, so it cannot be pinned (404)."""
    if not service.pin(cid, body.pinned):
        raise ApiProblem(404, f"No conversation {cid!r}.")
    item = service.conversation(cid)
    if item is None:  # deleted just after
        raise ApiProblem(404, f"No conversation {cid!r}.")
    return jsonable_encoder(summary(item, cid in service.replying([cid])))
