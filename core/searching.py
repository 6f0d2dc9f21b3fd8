"""Full-text search in message text and titles, for the service facade (issue 15)."""
from __future__ import annotations

import dataclasses
from datetime import datetime

from core.storage import MARK_END, MARK_START, SearchStore


@dataclasses.dataclass(frozen=True)
class SearchHit:
    """One conversation found: where the best match is (branch, message index; None for a title-only
    match), the snippet as plain text with `spans` marking the matched parts, and its rank (higher is better)."""

    conversation_id: str
    title: str | None
    app_id: str | None
    index: int | None
    role: str | None
    snippet: str
    spans: tuple[tuple[int, int], ...]
    rank: float
    updated_at: datetime


def split_marks(marked: str) -> tuple[str, tuple[tuple[int, int], ...]]:
    """Plain snippet text and the (start, end) of each highlighted part, from the database's marks."""
    out: list[str] = []
    spans: list[tuple[int, int]] = []
    size, start = 0, None
    for ch in marked:
        if ch == MARK_START:
            start = size
        elif ch == MARK_END:
            if start is not None and size > start:
                spans.append((start, size))
            start = None
        else:
            out.append(ch)
            size += 1
    return "".join(out), tuple(spans)


class SearchMixin:
    """ChatService's search methods (core/chat.py mixes it in); scoped like the listing (core/access.py)."""

    def search(self, query: str, limit: int = 20, everyone: bool = False) -> list[SearchHit]:
        """The conversations `conversations(everyone=...)` lists (the signed-in user's, an admin's choice of
        everyone's, all without sign-in) matching `query` (any text: it is never parsed as syntax)."""
        owner = self.listing_owner(everyone)
        limit = max(1, min(int(limit), 100))
        rows = SearchStore(self._persister).search(owner, query, limit)
        hits = []
        for r in rows:
            snippet, spans = split_marks(r.snippet)
            hits.append(SearchHit(r.partition_key, r.title, r.app_id, r.idx, r.role, snippet, spans, r.rank, r.updated_at))
        return hits
