"""Full-text search over message text and titles, inside the database Burrow already has (schema 0009).

SQLite: the external-content FTS5 table `burrow_search_fts` over burrow_search_messages (rowid = id),
bm25 ranking, snippet(). PostgreSQL: a stored `tsvector` column (`tsv`, generated from content) with a
GIN index, ts_rank, ts_headline. Rows are written in the save's transaction (search_index.py), once per
conversation: a fork indexes only what it added beyond its fork point.

A query ranks a bounded candidate set: the owner's CANDIDATES most recent matching messages (all of
them for a rarer word; for a word in more messages than that, the best of the newest), keeps the best
hit per conversation, and makes snippets for the returned hits only.
User input is always text: each word is quoted for FTS5 and for to_tsquery, all required, the last a prefix.
"""
from __future__ import annotations

import dataclasses
import re
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from core.storage.search_index import (common_prefix, first_new, forget_conversation, grew_only, index_messages,
                                       index_step, rewrites, rows_to_index)

__all__ = ["MARK_START", "MARK_END", "CANDIDATES", "SearchRow", "SearchStore", "search", "terms", "common_prefix",
           "first_new", "forget_conversation", "grew_only", "index_messages", "index_step", "rewrites", "rows_to_index"]

MARK_START, MARK_END = "\x02", "\x03"  # highlight marks in snippets (control chars: never in cleaned text)
MAX_TERMS, MAX_QUERY_CHARS = 16, 500
CANDIDATES = 2000  # matching messages ranked per query, newest first: bounds what a common word costs
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclasses.dataclass(frozen=True)
class SearchRow:
    partition_key: str
    title: str | None
    app_id: str | None
    idx: int | None
    role: str | None
    snippet: str
    rank: float
    updated_at: datetime


def terms(query: str) -> list[str]:
    """The words of a query (letters, digits, underscore), as plain text: operators and quotes are dropped."""
    return _WORD.findall(query[:MAX_QUERY_CHARS].lower())[:MAX_TERMS]


def _fts_match(words: list[str]) -> str:
    """An FTS5 query of quoted words, all required, the last one a prefix (search as you type)."""
    quoted = ['"' + w.replace('"', '""') + '"' for w in words]
    quoted[-1] += "*"
    return " AND ".join(quoted)


def _pg_query(words: list[str]) -> str:
    """A to_tsquery of the words as lexemes (quoted), all required, the last one a prefix."""
    quoted = ["'" + w.replace("'", "''").replace("\\", "") + "'" for w in words]
    quoted[-1] += ":*"
    return " & ".join(quoted)


# FTS5 walks the matches newest first (rowid DESC) and stops at :cand owned ones; bm25 is computed for
# those only, snippet() for the :limit rows returned (FTS5 seeks each by rowid under the same MATCH).
_SQLITE = text(f"""
WITH cand AS MATERIALIZED (
  SELECT burrow_search_fts.rowid AS id, m.partition_key AS pk, bm25(burrow_search_fts) AS score
  FROM burrow_search_fts JOIN burrow_search_messages m ON m.id = burrow_search_fts.rowid
  JOIN burrow_conversations c ON c.partition_key = m.partition_key
  WHERE burrow_search_fts MATCH :q AND c.owner = :owner ORDER BY burrow_search_fts.rowid DESC LIMIT :cand),
best AS MATERIALIZED (SELECT id, pk, min(score) AS score FROM cand GROUP BY pk ORDER BY score, id DESC LIMIT :limit)
SELECT c.partition_key, c.title, m.app_id, m.idx, m.role,
       snippet(burrow_search_fts, 0, '{MARK_START}', '{MARK_END}', '…', 12), -b.score, c.updated_at
FROM best b JOIN burrow_search_fts ON burrow_search_fts.rowid = b.id JOIN burrow_search_messages m ON m.id = b.id
JOIN burrow_conversations c ON c.partition_key = b.pk
WHERE burrow_search_fts MATCH :q ORDER BY b.score, b.id DESC""")

# The GIN index (or, for a word in most rows, the primary key backwards) finds the :cand newest owned
# matches; ts_rank reads the stored tsvector of those only, ts_headline runs for the :limit returned.
_PG = text(f"""
WITH q AS MATERIALIZED (SELECT to_tsquery('simple', :q) AS q),
cand AS MATERIALIZED (
  SELECT m.id, m.partition_key AS pk, m.tsv FROM burrow_search_messages m
  WHERE m.tsv @@ (SELECT q FROM q)
    AND m.partition_key IN (SELECT partition_key FROM burrow_conversations WHERE owner = :owner)
  ORDER BY m.id DESC LIMIT :cand),
best AS MATERIALIZED (
  SELECT DISTINCT ON (pk) id, pk, ts_rank(tsv, (SELECT q FROM q)) AS rank FROM cand ORDER BY pk, rank DESC, id DESC),
top AS MATERIALIZED (SELECT * FROM best ORDER BY rank DESC, id DESC LIMIT :limit)
SELECT c.partition_key, c.title, m.app_id, m.idx, m.role,
       ts_headline('simple', m.content, (SELECT q FROM q),
                   'StartSel={MARK_START}, StopSel={MARK_END}, MaxWords=24, MinWords=8'),
       t.rank, c.updated_at
FROM top t JOIN burrow_search_messages m ON m.id = t.id JOIN burrow_conversations c ON c.partition_key = t.pk
ORDER BY t.rank DESC, t.id DESC""")

_TITLES = text("""
SELECT partition_key, title, updated_at FROM burrow_conversations
WHERE owner = :owner AND lower(title) LIKE :like ESCAPE '\\' ORDER BY activity DESC LIMIT :limit""")


def _when(value: Any) -> datetime:
    """A timestamp from a text() row (SQLite returns its stored text)."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def search(conn: Connection, owner: str, query: str, limit: int) -> list[SearchRow]:
    """The owner's best hit per conversation, best first, then conversations matching by title only."""
    words = terms(query)
    if not words or limit <= 0:
        return []
    params = {"owner": owner, "limit": limit, "cand": CANDIDATES}
    if conn.dialect.name == "sqlite":
        rows = conn.execute(_SQLITE, {**params, "q": _fts_match(words)}).all()
    else:
        rows = conn.execute(_PG, {**params, "q": _pg_query(words)}).all()
    best = {r[0]: SearchRow(r[0], r[1], r[2], r[3], r[4], r[5], float(r[6]), _when(r[7])) for r in rows}
    if len(best) < limit:
        like = "%" + " ".join(words).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        for key, title, updated in conn.execute(_TITLES, {"owner": owner, "like": like, "limit": limit}):
            if key not in best and len(best) < limit:
                best[key] = SearchRow(key, title, None, None, None, title or "", 0.0, _when(updated))
    return list(best.values())


class SearchStore:
    """The public face of search for the service (code outside core.storage uses only this)."""

    def __init__(self, persister: Any) -> None:
        self.database = persister.database

    def search(self, owner: str, query: str, limit: int = 20) -> list[SearchRow]:
        return self.database.read(lambda conn: search(conn, owner, query, limit))
