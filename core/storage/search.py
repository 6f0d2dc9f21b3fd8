"""Full-text search over message text and titles, inside the database Burrow already has (schemas 0009, 0010).

SQLite: the external-content FTS5 table `burrow_search_fts` over burrow_search_messages (rowid = id),
ranked and highlighted in Python (snippets.py). PostgreSQL: a stored `tsvector` column (`tsv`, generated
from content), a GIN index of its lexemes keyed by block of ids (migration 0010) so that the newest
matches are found first, ts_rank, ts_headline. Rows are written in the save's transaction
(search_index.py), once per conversation: a fork indexes only what it added beyond its fork point.

A query ranks a bounded candidate set: the owner's CANDIDATES most recent matching messages (all of
them for a rarer word; for a word in more messages than that, the best of the newest), keeps the best
hit per conversation, and makes snippets for the returned hits only.
User input is always text: each word is quoted for FTS5 and for to_tsquery, all required, the last a
prefix once it has two characters.
"""
from __future__ import annotations

import dataclasses
import re
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from core.storage.schema import as_utc
from core.storage.snippets import snippet, tf_scores
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


def _prefix(words: list[str]) -> bool:
    """The last word matches as a prefix from two characters on (one letter would expand to half the index)."""
    return len(words[-1]) >= 2


def _fts_match(words: list[str]) -> str:
    """An FTS5 query of quoted words, all required, the last one a prefix (search as you type)."""
    quoted = ['"' + w.replace('"', '""') + '"' for w in words]
    if _prefix(words):
        quoted[-1] += "*"
    return " AND ".join(quoted)


def _pg_query(words: list[str]) -> str:
    """A to_tsquery of the words as lexemes (quoted), all required, the last one a prefix."""
    quoted = ["'" + w.replace("'", "''").replace("\\", "") + "'" for w in words]
    if _prefix(words):
        quoted[-1] += ":*"
    return " & ".join(quoted)


# FTS5 walks the matches newest first (rowid DESC, a prefix of 2 or 3 letters through its prefix index)
# and stops at :cand owned ones. They are ranked in Python (tf_scores): FTS5's bm25() first counts each
# word's documents over every match, which for a common word is the whole cost of the query.
_SQLITE = text("""
SELECT m.id, c.partition_key, c.title, m.app_id, m.idx, m.role, m.content, c.updated_at
FROM burrow_search_fts JOIN burrow_search_messages m ON m.id = burrow_search_fts.rowid
JOIN burrow_conversations c ON c.partition_key = m.partition_key
WHERE burrow_search_fts MATCH :q AND (CAST(:owner AS VARCHAR) IS NULL OR c.owner = :owner)
ORDER BY burrow_search_fts.rowid DESC LIMIT :cand""")

# PostgreSQL's candidates: the newest RECENT rows are read directly (a backward scan of the primary key,
# matching the stored tsv: a common word finds its candidates there); below them, the index of
# migration 0010 is asked block by block, newest first, in groups of 1, 1, 2, 4... blocks, and the
# union stops at :cand (Append runs its children in order, each stops at :cand itself). `m.id + 0`
# keeps a block's matches from being found by walking the primary key through every older row.
# ts_rank (normalization 1: divided by 1 + log of the length, as SQLite's ranking weighs length too)
# then reads the stored tsv of the candidates by id, and ts_headline runs for the rows returned. The
# tsquery, bounds and blocks are literals, not parameters: burrow_search_query() is folded before
# planning, so the planner sees the words' frequencies. The words are \\w+ only (terms()).
RECENT = 8192
# For the search's transaction only: these plans are built to stop early, which a parallel or
# JIT-compiled plan (both chosen for the index function's high cost) or a sequential scan would not.
PG_SETTINGS = {"jit": "off", "max_parallel_workers_per_gather": "0", "enable_seqscan": "off"}
_PG_NEWEST = text("SELECT max(id), burrow_search_block(max(id) - :recent) FROM burrow_search_messages")
_PG_RECENT = """(SELECT m.id, m.partition_key AS pk FROM burrow_search_messages m
    WHERE m.id > {cutoff} AND m.tsv @@ {tsq}{owned} ORDER BY m.id DESC LIMIT {cand})"""
_PG_BLOCKS = """(SELECT m.id, m.partition_key AS pk FROM burrow_search_messages m
    WHERE burrow_search_terms(m.id, m.tsv) @@ burrow_search_query({tsq}, '{{{blocks}}}'::bigint[])
      AND m.tsv @@ {tsq}{below}{owned} ORDER BY m.id + 0 DESC LIMIT {cand})"""
_PG = """
WITH cand AS MATERIALIZED (SELECT * FROM (
    {children}) u LIMIT {cand}),
best AS MATERIALIZED (
  SELECT DISTINCT ON (c.pk) c.id, c.pk, ts_rank(m.tsv, {tsq}, 1) AS rank
  FROM cand c JOIN burrow_search_messages m ON m.id = c.id ORDER BY c.pk, rank DESC, c.id DESC),
top AS MATERIALIZED (SELECT * FROM best ORDER BY rank DESC, id DESC LIMIT {limit})
SELECT c.partition_key, c.title, m.app_id, m.idx, m.role,
       ts_headline('simple', m.content, {tsq}, 'StartSel={start}, StopSel={stop}, MaxWords=24, MinWords=8'),
       t.rank, c.updated_at
FROM top t JOIN burrow_search_messages m ON m.id = t.id JOIN burrow_conversations c ON c.partition_key = t.pk
ORDER BY t.rank DESC, t.id DESC"""


_PG_OWNED = "\n      AND m.partition_key IN (SELECT partition_key FROM burrow_conversations WHERE owner = :owner)"


def block_groups(newest: int) -> list[list[int]]:
    """Blocks `newest` down to 0 in groups of 1, 1, 2, 4... (newest first): a rare word's few matches
    cost a handful of index lookups, a frequent one's stop in the first groups."""
    groups, block = [], newest
    while block >= 0:
        size = 2 ** max(len(groups) - 1, 0)
        groups.append(list(range(block, max(block - size, -1), -1)))
        block -= size
    return groups


def _pg_statement(words: list[str], limit: int, owned: bool, last_id: int, newest_block: int) -> Any:
    """The PostgreSQL search for these words when the newest row is `last_id`; without `owned`, over
    everyone's messages (no join with the conversations for the candidates)."""
    tsq = "to_tsquery('simple', '" + _pg_query(words).replace("'", "''") + "')"
    owner = _PG_OWNED if owned else ""
    cutoff = last_id - RECENT
    children = [_PG_RECENT.format(cutoff=cutoff, tsq=tsq, owned=owner, cand=int(CANDIDATES))]
    if cutoff > 0:
        children += [_PG_BLOCKS.format(tsq=tsq, blocks=",".join(map(str, blocks)), owned=owner, cand=int(CANDIDATES),
                                       below=f" AND m.id + 0 <= {cutoff}" if i == 0 else "")
                     for i, blocks in enumerate(block_groups(newest_block))]
    return text(_PG.format(children="\n    UNION ALL ".join(children), tsq=tsq, cand=int(CANDIDATES),
                           limit=int(limit), start=MARK_START, stop=MARK_END))


def _pg_search(conn: Connection, words: list[str], owner: str | None, limit: int) -> list[Any]:
    """PostgreSQL's rows for the words (run with PG_SETTINGS)."""
    last_id, newest_block = conn.execute(_PG_NEWEST, {"recent": RECENT}).one()
    if last_id is None:
        return []
    statement = _pg_statement(words, limit, owner is not None, int(last_id), int(newest_block))
    return conn.execute(statement, {"owner": owner}).all()


_TITLES = text("""
SELECT partition_key, title, updated_at FROM burrow_conversations
WHERE (CAST(:owner AS VARCHAR) IS NULL OR owner = :owner) AND lower(title) LIKE :like ESCAPE '\\'
ORDER BY activity DESC LIMIT :limit""")


def _when(value: Any) -> datetime:
    """A timestamp from a text() row, in UTC (SQLite returns its stored text, without the zone)."""
    return as_utc(datetime.fromisoformat(value) if isinstance(value, str) else value)


def _ranked(candidates: list[Any], words: list[str], limit: int) -> list[tuple]:
    """SQLite's candidates (newest first) ranked: the best message per conversation (the newer on a tie),
    the best `limit` of those, each with its snippet, in the shape of the PostgreSQL query's rows."""
    best: dict[str, tuple[float, Any]] = {}
    for score, row in zip(tf_scores([r.content for r in candidates], words), candidates):
        if row.partition_key not in best or score > best[row.partition_key][0]:
            best[row.partition_key] = (score, row)
    top = sorted(best.values(), key=lambda pair: (-pair[0], -pair[1].id))[:limit]
    return [(r.partition_key, r.title, r.app_id, r.idx, r.role,
             snippet(r.content, words, _prefix(words), MARK_START, MARK_END), score, r.updated_at) for score, r in top]


def search(conn: Connection, owner: str | None, query: str, limit: int) -> list[SearchRow]:
    """The owner's best hit per conversation (everyone's for None), best first, then conversations
    matching by title only."""
    words = terms(query)
    if not words or limit <= 0:
        return []
    params = {"owner": owner, "limit": limit, "cand": CANDIDATES}
    if conn.dialect.name == "sqlite":
        rows = _ranked(conn.execute(_SQLITE, {**params, "q": _fts_match(words)}).all(), words, limit)
    else:
        rows = _pg_search(conn, words, owner, limit)
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

    def search(self, owner: str | None, query: str, limit: int = 20) -> list[SearchRow]:
        return self.database.read(lambda conn: search(conn, owner, query, limit), settings=PG_SETTINGS)
