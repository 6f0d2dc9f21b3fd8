"""Full-text search under /api/v1: the caller's conversations whose messages or title match `q`
(any text; it is never parsed as query syntax), best first."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from core.chat import ChatService
from server.deps import get_service
from server.errors import ApiProblem
from server.schemas import problems

router = APIRouter(prefix="/api/v1", tags=["search"])


class SearchHitOut(BaseModel):
    conversation_id: str
    title: str | None
    branch: str | None  # the branch (Burr app_id) of the matching message; null for a title-only match
    index: int | None  # the message's index in that branch's history
    role: str | None
    snippet: str  # plain text; `highlights` are [start, end) character offsets into it
    highlights: list[tuple[int, int]]
    rank: float
    updated_at: datetime


class SearchResults(BaseModel):
    query: str
    hits: list[SearchHitOut]


@router.get("/search", response_model=SearchResults, responses=problems(403, 422),
            summary="Search messages and titles")
def search(q: str = Query(max_length=1000), limit: int = Query(20, ge=1, le=100),
           everyone: bool = Query(False, description="An admin's search of every user's conversations"),
           service: ChatService = Depends(get_service)) -> Any:
    """Ranked hits, one per conversation (those GET /conversations lists), with a snippet of the
    best-matching message."""
    if everyone and not service.may_list_everyone():
        raise ApiProblem(403, "Only admins (BURROW_ADMINS) can search everyone's conversations.")
    hits = service.search(q, limit, everyone=everyone)
    return SearchResults(query=q, hits=[SearchHitOut(
        conversation_id=h.conversation_id, title=h.title, branch=h.app_id, index=h.index, role=h.role,
        snippet=h.snippet, highlights=list(h.spans), rank=h.rank, updated_at=h.updated_at) for h in hits])
