"""Writing the search index, inside the save's transaction (schema 0009).

Rows of `burrow_search_messages` belong to the branch that wrote the message: a fork's first save
indexes only what follows the messages it shares with its parent's latest history (compared by
value), because those are found at the parent already. So each message is in the index once per
conversation, and a hit names a branch that holds it.

Invariant kept by every save: a branch's rows are messages of its latest history, and every
message of a branch with text is a row of that branch or of the ancestor it was inherited from.
A branch whose history is rewritten from index s first gives its children forked past s their
own copy of [s, fork point) (indexed from the child's latest history), then replaces its rows
from s: the children keep finding what they inherited, the branch only what it now holds.

SQLite: `burrow_search_fts` is an external-content FTS5 table over burrow_search_messages
(rowid = id; the text is stored once), so rows leave it through FTS5's 'delete' command with
their old text. PostgreSQL: the `tsv` column is generated from content, nothing to do here.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from core.storage.codec import Manifest, list_length
from core.storage.listcache import Branch
from core.text import plain_text

HISTORY = "chat_history"

_FTS_FORGET = text("INSERT INTO burrow_search_fts (burrow_search_fts, rowid, content) SELECT 'delete', id, content "
                   "FROM burrow_search_messages WHERE partition_key = :k AND app_id = :a AND idx >= :s")
_FTS_ADD = text("INSERT INTO burrow_search_fts (rowid, content) SELECT id, content FROM burrow_search_messages "
                "WHERE partition_key = :k AND app_id = :a AND idx >= :s")
_DELETE = text("DELETE FROM burrow_search_messages WHERE partition_key = :k AND app_id = :a AND idx >= :s")
_INSERT = text("INSERT INTO burrow_search_messages (partition_key, app_id, idx, role, content) "
               "VALUES (:k, :a, :i, :r, :c)")
_APP = text("SELECT id, created_at FROM burrow_apps WHERE partition_key = :k AND app_id = :a")
_CHILDREN = text(
    "SELECT a.id, a.app_id, a.created_at, "
    "(SELECT s.manifest FROM burrow_snapshots s WHERE s.app_ref = a.id ORDER BY s.sequence_id LIMIT 1) AS first "
    "FROM burrow_apps a WHERE a.partition_key = :k AND a.forked_from_app_id = :a")


def rows_to_index(history: list, start: int) -> list[dict[str, Any]]:
    """history[start:] as search rows: index `i`, role `r`, cleaned text `c` (messages with text only)."""
    return [{"i": i, "r": str(m.get("role", ""))[:32], "c": plain_text(m["content"])}
            for i, m in enumerate(history[start:], start)
            if isinstance(m, dict) and isinstance(m.get("content"), str) and m["content"]]


def first_new(prev_entry: list | None, entry: list | None) -> int:
    """Index of the first chat_history item this step wrote: the previous length when the list only grew."""
    if entry is None or prev_entry is None or prev_entry[0] != entry[0]:
        return 0
    return min(prev_entry[1], entry[1])


def grew_only(prev_entry: list | None, entry: list | None) -> bool:
    """True when this step only appended to chat_history (same generation): nothing to delete first."""
    return entry is not None and prev_entry is not None and prev_entry[0] == entry[0] and entry[1] >= prev_entry[1]


def rewrites(prev_entry: list | None, entry: list | None) -> bool:
    """Whether chat_history changed other than by appending (rewritten, shrunk, appeared or removed):
    such a step replaces search rows, so PostgreSQL saves it on the general path."""
    if prev_entry is None and entry is None:
        return False
    return not grew_only(prev_entry, entry)


def common_prefix(old: Any, new: list) -> int:
    """How many leading items two histories share (by value): where a rewrite really starts."""
    if not isinstance(old, list):
        return 0
    n = 0
    for a, b in zip(old, new):
        if a != b:
            break
        n += 1
    return n


def index_step(conn: Connection, key: str, app_id: str, entries: tuple[list | None, list | None],
               histories: tuple[Any, Any], forked_from: tuple | None, new_branch: bool) -> None:
    """Keeps branch (key, app_id)'s rows equal to what this step's chat_history adds to the index.

    `entries` are the previous and this step's manifest entries, `histories` the previous and this
    step's lists; `forked_from` is (app id, sequence id) for a fork's first save."""
    prev_entry, entry = entries
    history = histories[1] if isinstance(histories[1], list) else []
    if new_branch:
        start = fork_point(conn, key, forked_from, history) if forked_from else 0
        insert_rows(conn, key, app_id, history, start)
    elif not rewrites(prev_entry, entry):
        if entry is not None and first_new(prev_entry, entry) < entry[1]:
            index_messages(conn, key, app_id, history, first_new(prev_entry, entry))
    else:
        start = common_prefix(histories[0], history) if prev_entry is not None else 0
        hand_down(conn, key, app_id, start)
        index_messages(conn, key, app_id, history, start)


def index_messages(conn: Connection, key: str, app_id: str, history: Any, start: int) -> None:
    """Indexes history[start:] of branch (key, app_id), replacing its rows at or past `start`."""
    forget_rows(conn, key, app_id, start)
    insert_rows(conn, key, app_id, history if isinstance(history, list) else [], start)


def forget_rows(conn: Connection, key: str, app_id: str, start: int) -> None:
    place = {"k": key, "a": app_id, "s": start}
    if conn.dialect.name == "sqlite":
        conn.execute(_FTS_FORGET, place)
    conn.execute(_DELETE, place)


def insert_rows(conn: Connection, key: str, app_id: str, history: list, start: int) -> None:
    rows = [dict(row, k=key, a=app_id) for row in rows_to_index(history, start)]
    if not rows:
        return
    conn.execute(_INSERT, rows)
    if conn.dialect.name == "sqlite":
        conn.execute(_FTS_ADD, {"k": key, "a": app_id, "s": start})


def _length(manifest: str | None) -> int:
    return (list_length(manifest, HISTORY) or 0) if manifest else 0


def fork_point(conn: Connection, key: str, forked_from: tuple, history: list) -> int:
    """How many leading messages a new fork can leave to its parent: those equal to the parent's latest
    ones (a fork of an older step of a since rewritten parent shares less than it inherited)."""
    parent = conn.execute(_APP, {"k": key, "a": forked_from[0]}).first()
    if parent is None:
        return 0
    return common_prefix(_latest_history(conn, key, forked_from[0], parent.id, parent.created_at), history)


def hand_down(conn: Connection, key: str, app_id: str, start: int) -> None:
    """Before branch `app_id` replaces its rows from `start`: each child forked past `start` indexes
    its own [start, ...) from its latest history, since it can no longer find it here."""
    children = conn.execute(_CHILDREN, {"k": key, "a": app_id}).all()
    for child_ref, child_id, created_at, first in children:
        if _length(first) > start:  # its first step's length bounds what it left to this branch
            index_messages(conn, key, child_id, _latest_history(conn, key, child_id, child_ref, created_at), start)


def _latest_history(conn: Connection, key: str, app_id: str, app_ref: int, created_at: Any) -> list:
    # rows.py imports catalog.py, which imports this module's caller: imported here to keep the cycle open
    from core.storage.rows import find_latest_snapshot, read_state
    snapshot = find_latest_snapshot(conn, app_ref)
    if snapshot is None:
        return []
    state = read_state(conn, Branch(key, app_id, app_ref, created_at), Manifest.from_json(snapshot.manifest))[0]
    history = state.get(HISTORY)
    return history if isinstance(history, list) else []


def forget_conversation(conn: Connection, key: str) -> None:
    """Removes a conversation's search rows (ConversationStore.delete's transaction)."""
    if conn.dialect.name == "sqlite":
        conn.execute(text("INSERT INTO burrow_search_fts (burrow_search_fts, rowid, content) SELECT 'delete', id, "
                          "content FROM burrow_search_messages WHERE partition_key = :k"), {"k": key})
    conn.execute(text("DELETE FROM burrow_search_messages WHERE partition_key = :k"), {"k": key})
