"""Schema 0009: search indexes each message once per conversation, in a smaller, faster index.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

- A fork's rows below its fork point that repeat its parent's message (same index, same text) are
  deleted: the message is found at the branch that wrote it. The fork point is the smaller of the
  fork's first step's chat_history length and the parent's at the fork step (read from manifests,
  in SQL, so the printed script does it too). Whatever order the rows are deleted in, a deleted
  row's text stays at an ancestor (the root of each chain of equal rows is never deleted).
- SQLite: `burrow_search_fts` becomes an external-content FTS5 table over burrow_search_messages
  (rowid = id): the text is no longer stored a second time inside FTS5; with prefix indexes for 2 and
  3 characters (the last word typed is a prefix). Rebuilt from the rows.
- PostgreSQL: a stored generated column `tsv` = to_tsvector('simple', content), with the GIN index
  `ix_burrow_search_messages_tsv` on it instead of on the expression (ranking and rechecks read it).
A release at 0008 refuses this database (Alembic releases refuse newer revisions).
Frozen: the tables, the manifest format (["l", generation, length, ...]) are written out here.
"""
from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_LEN_PG = "coalesce((s.manifest::json -> 'chat_history' ->> 2)::int, 0)"
_LEN_SQLITE = "coalesce(json_extract(s.manifest, '$.chat_history[2]'), 0)"

_FORKS = """
SELECT a.partition_key AS pk, a.app_id AS app_id, a.forked_from_app_id AS parent,
  (SELECT {length} FROM burrow_snapshots s WHERE s.app_ref = a.id ORDER BY s.sequence_id LIMIT 1) AS own,
  (SELECT {length} FROM burrow_snapshots s JOIN burrow_apps p ON p.id = s.app_ref
   WHERE p.partition_key = a.partition_key AND p.app_id = a.forked_from_app_id
     AND s.sequence_id = a.forked_from_sequence_id) AS inherited
FROM burrow_apps a WHERE a.forked_from_app_id IS NOT NULL"""

_DEDUPE = """
DELETE FROM burrow_search_messages WHERE id IN (
  SELECT r.id FROM burrow_search_messages r JOIN ({forks}) f ON r.partition_key = f.pk AND r.app_id = f.app_id
  WHERE r.idx < f.own AND r.idx < coalesce(f.inherited, 0) AND EXISTS (
    SELECT 1 FROM burrow_search_messages p
    WHERE p.partition_key = f.pk AND p.app_id = f.parent AND p.idx = r.idx AND p.content = r.content))"""


def upgrade() -> None:
    sqlite = op.get_context().dialect.name == "sqlite"
    dedupe = _DEDUPE.format(forks=_FORKS.format(length=_LEN_SQLITE if sqlite else _LEN_PG))
    if sqlite:
        op.execute("DROP TABLE burrow_search_fts")
        op.execute(dedupe)
        op.execute("CREATE VIRTUAL TABLE burrow_search_fts USING fts5(content, content = 'burrow_search_messages', "
                   "content_rowid = 'id', prefix = '2 3', tokenize = 'unicode61 remove_diacritics 2')")
        op.execute("INSERT INTO burrow_search_fts (burrow_search_fts) VALUES ('rebuild')")
    else:
        op.execute("DROP INDEX ix_burrow_search_messages_tsv")
        op.execute(dedupe)
        op.execute("ALTER TABLE burrow_search_messages ADD COLUMN tsv tsvector "
                   "GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED")
        op.execute("CREATE INDEX ix_burrow_search_messages_tsv ON burrow_search_messages USING gin (tsv)")


def downgrade() -> None:
    raise NotImplementedError("Burrow's schema only moves forward: restore a backup to go back")
