"""Schema 0008: full-text search over message text (SQLite FTS5, PostgreSQL GIN over a tsvector).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

`burrow_search_messages` holds each branch's chat_history messages as text (partition key, app id,
index, role, content); SQLite indexes it in the FTS5 table `burrow_search_fts` (rowid = id), PostgreSQL
with a GIN index over to_tsvector('simple', content). Existing data is indexed here: the latest
snapshot of every branch, its chat_history read from the list chunks (b"4" LZ4 block or b"j" JSON).
Additive only: a release at 0007 keeps working on it (its saves just do not index).
Frozen: the tables, the manifest and chunk formats are written out here, never imported.
"""
from __future__ import annotations

import json
import re

import lz4.block
import sqlalchemy as sa
from alembic import context, op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
HISTORY = "chat_history"
# Frozen copy of the cleaning of 2026-12-02 (core/text.py plain_text): text every database stores.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


def _plain(text: str) -> str:
    return _CONTROL.sub("", text.encode("utf-8", "replace").decode("utf-8"))


def upgrade() -> None:
    op.create_table(
        "burrow_search_messages",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("partition_key", sa.String(255), nullable=False),
        sa.Column("app_id", sa.String(255), nullable=False),
        sa.Column("idx", sa.Integer, nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.UniqueConstraint("partition_key", "app_id", "idx", name="uq_burrow_search_messages_place"))
    sqlite = op.get_context().dialect.name == "sqlite"
    if sqlite:
        op.execute("CREATE VIRTUAL TABLE burrow_search_fts USING fts5(content, "
                   "tokenize = 'unicode61 remove_diacritics 2')")
    else:
        op.execute("CREATE INDEX ix_burrow_search_messages_tsv ON burrow_search_messages "
                   "USING gin (to_tsvector('simple', content))")
    if context.is_offline_mode():
        op.execute("-- 0008: existing messages are indexed by the online upgrade only (it decodes LZ4 chunks)")
        return
    _index_existing(op.get_bind(), sqlite)


def _decode(blob: bytes) -> list:
    body = bytes(blob[1:])
    return json.loads(lz4.block.decompress(body) if blob[:1] == b"4" else body)


def _history(conn: sa.Connection, app_ref: int, entry: list) -> list:
    generation, length = entry[0], entry[1]
    rows = conn.execute(sa.text(
        "SELECT data FROM burrow_list_items WHERE app_ref = :r AND key = :k AND generation = :g AND idx < :n "
        "ORDER BY idx"), {"r": app_ref, "k": HISTORY, "g": generation, "n": length})
    items: list = []
    for (data,) in rows:
        items.extend(_decode(data))
    return items[:length]


def _index_existing(conn: sa.Connection, sqlite: bool) -> None:
    branches = conn.execute(sa.text(
        "SELECT a.id, a.partition_key, a.app_id, s.manifest FROM burrow_apps a "
        "JOIN burrow_snapshots s ON s.app_ref = a.id AND s.sequence_id = a.last_sequence_id")).all()
    for app_ref, key, app_id, manifest in branches:
        entry = json.loads(manifest).get(HISTORY)
        if not entry or entry[0] != "l":
            continue
        rows = [{"k": key, "a": app_id, "i": i, "r": str(m.get("role", ""))[:32], "c": _plain(m["content"])}
                for i, m in enumerate(_history(conn, app_ref, entry[1:]))
                if isinstance(m, dict) and isinstance(m.get("content"), str) and m["content"]]
        if rows:
            conn.execute(sa.text("INSERT INTO burrow_search_messages (partition_key, app_id, idx, role, content) "
                                 "VALUES (:k, :a, :i, :r, :c)"), rows)
    if sqlite:
        conn.execute(sa.text("INSERT INTO burrow_search_fts (rowid, content) SELECT id, content FROM burrow_search_messages"))


def downgrade() -> None:
    raise NotImplementedError("Burrow's schema only moves forward: restore a backup to go back")
