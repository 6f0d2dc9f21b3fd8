"""Full-text search over message text and titles, inside the database Burrow already has.

SQLite: an FTS5 table (`burrow_search_fts`, rowid = burrow_search_messages.id), bm25 ranking, snippet().
PostgreSQL: a GIN index over to_tsvector('simple', content), ts_rank, ts_headline.
Rows are written by the persister's save transaction (`index_messages`): only the messages a step
added to its branch's chat_history; a rewritten history replaces the branch's rows from where it changed.
A fork's first save indexes its whole history under its own app_id (hits are one per conversation).
User input is always text: each word is quoted for FTS5 and passed through plainto_tsquery on PostgreSQL.
"""
from __future__ import annotations

import dataclasses
import re
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from core.text import plain_text

MARK_START, MARK_END = "\x02", "\x03"  # highlight marks in snippets (control chars: never in cleaned text)
MAX_TERMS, MAX_QUERY_CHARS = 16, 500
_WORD = re.compile(r"\w+", re.UNICODE)

FTS_DDL = ("CREATE VIRTUAL TABLE IF NOT EXISTS burrow_search_fts USING fts5(content, "
           "tokenize = 'unicode61 remove_diacritics 2')")
PG_INDEX_DDL = ("CREATE INDEX IF NOT EXISTS ix_burrow_search_messages_tsv ON burrow_search_messages "
                "USING gin (to_tsvector('simple', content))")


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


def first_new(prev_entry: list | None, entry: list | None) -> int:
    """Index of the first chat_history item this step wrote: the previous length when the list only grew."""
    if entry is None or prev_entry is None or prev_entry[0] != entry[0]:
        return 0
    return min(prev_entry[1], entry[1])


def rows_to_index(history: list, start: int) -> list[dict[str, Any]]:
    """history[start:] as search rows: index `i`, role `r`, cleaned text `c` (messages with text only)."""
    return [{"i": i, "r": str(m.get("role", ""))[:32], "c": plain_text(m["content"])}
            for i, m in enumerate(history[start:], start)
            if isinstance(m, dict) and isinstance(m.get("content"), str) and m["content"]]


def grew_only(prev_entry: list | None, entry: list | None) -> bool:
    """True when this step only appended to chat_history (same generation): nothing to delete first."""
    return entry is not None and prev_entry is not None and prev_entry[0] == entry[0] and entry[1] >= prev_entry[1]


def index_messages(conn: Connection, key: str, app_id: str, history: Any, start: int) -> None:
    """Indexes history[start:] of branch (key, app_id), replacing rows at or past `start` (same transaction)."""
    if not isinstance(history, list):
        return
    sqlite = conn.dialect.name == "sqlite"
    place = {"k": key, "a": app_id, "s": start}
    if sqlite:
        conn.execute(text("DELETE FROM burrow_search_fts WHERE rowid IN (SELECT id FROM burrow_search_messages "
                          "WHERE partition_key = :k AND app_id = :a AND idx >= :s)"), place)
    conn.execute(text("DELETE FROM burrow_search_messages WHERE partition_key = :k AND app_id = :a AND idx >= :s"), place)
    rows = [dict(row, k=key, a=app_id) for row in rows_to_index(history, start)]
    if not rows:
        return
    conn.execute(text("INSERT INTO burrow_search_messages (partition_key, app_id, idx, role, content) "
                      "VALUES (:k, :a, :i, :r, :c)"), rows)
    if sqlite:
        conn.execute(text("INSERT INTO burrow_search_fts (rowid, content) SELECT id, content FROM burrow_search_messages "
                          "WHERE partition_key = :k AND app_id = :a AND idx >= :s"), place)


def forget_conversation(conn: Connection, key: str) -> None:
    """Removes a conversation's search rows (ConversationStore.delete's transaction)."""
    if conn.dialect.name == "sqlite":
        conn.execute(text("DELETE FROM burrow_search_fts WHERE rowid IN "
                          "(SELECT id FROM burrow_search_messages WHERE partition_key = :k)"), {"k": key})
    conn.execute(text("DELETE FROM burrow_search_messages WHERE partition_key = :k"), {"k": key})


def _fts_match(words: list[str]) -> str:
    """An FTS5 query of quoted words, all required, the last one a prefix (search as you type)."""
    quoted = ['"' + w.replace('"', '""') + '"' for w in words]
    quoted[-1] += "*"
    return " AND ".join(quoted)


_SQLITE = text(f"""
SELECT c.partition_key, c.title, m.app_id, m.idx, m.role,
       snippet(burrow_search_fts, 0, '{MARK_START}', '{MARK_END}', '…', 12) AS snip,
       -bm25(burrow_search_fts) AS rank, c.updated_at
FROM burrow_search_fts JOIN burrow_search_messages m ON m.id = burrow_search_fts.rowid
JOIN burrow_conversations c ON c.partition_key = m.partition_key
WHERE burrow_search_fts MATCH :q AND c.owner = :owner
ORDER BY rank DESC LIMIT :scan""")

_PG = text(f"""
WITH q AS (SELECT to_tsquery('simple', :q) AS q),
hits AS (
  SELECT m.*, ts_rank(to_tsvector('simple', m.content), q.q) AS rank FROM burrow_search_messages m, q
  WHERE to_tsvector('simple', m.content) @@ q.q
    AND m.partition_key IN (SELECT partition_key FROM burrow_conversations WHERE owner = :owner)
  ORDER BY rank DESC LIMIT :scan)
SELECT c.partition_key, c.title, h.app_id, h.idx, h.role,
       ts_headline('simple', h.content, q.q, 'StartSel={MARK_START}, StopSel={MARK_END}, MaxWords=24, MinWords=8'),
       h.rank, c.updated_at
FROM hits h JOIN burrow_conversations c ON c.partition_key = h.partition_key, q ORDER BY h.rank DESC""")

_TITLES = text("""
SELECT partition_key, title, updated_at FROM burrow_conversations
WHERE owner = :owner AND lower(title) LIKE :like ESCAPE '\\' ORDER BY activity DESC LIMIT :limit""")


def _when(value: Any) -> datetime:
    """A timestamp from a text() row (SQLite returns its stored text)."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _pg_query(words: list[str]) -> str:
    """A to_tsquery of the words as lexemes (quoted), all required, the last one a prefix."""
    quoted = ["'" + w.replace("'", "''").replace("\\", "") + "'" for w in words]
    quoted[-1] += ":*"
    return " & ".join(quoted)


def search(conn: Connection, owner: str, query: str, limit: int) -> list[SearchRow]:
    """The owner's best hit per conversation, best first, then conversations matching by title only."""
    words = terms(query)
    if not words or limit <= 0:
        return []
    params = {"owner": owner, "scan": limit * 10 + 50}
    if conn.dialect.name == "sqlite":
        rows = conn.execute(_SQLITE, {**params, "q": _fts_match(words)}).all()
    else:
        rows = conn.execute(_PG, {**params, "q": _pg_query(words)}).all()
    best: dict[str, SearchRow] = {}
    for r in rows:
        if r[0] not in best and len(best) < limit:
            best[r[0]] = SearchRow(r[0], r[1], r[2], r[3], r[4], r[5], float(r[6]), _when(r[7]))
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
