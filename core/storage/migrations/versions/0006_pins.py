"""Schema 0006: pinned conversations (listed first, never pruned by retention).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

`burrow_conversations.pinned` (false for every existing row) and an index on (pinned, activity),
so the pinned-first listing still reads the catalog through an index only. The index on activity
stays: a release at 0005 keeps listing by it, and keeps working on a database at 0006 (it never
reads or writes `pinned`; its inserts get the server default).
Frozen: the column and index are written out here.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("burrow_conversations",
                  sa.Column("pinned", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_index("ix_burrow_conversations_pinned_activity", "burrow_conversations", ["pinned", "activity"])


def downgrade() -> None:
    raise NotImplementedError("Burrow's schema only moves forward: restore a backup to go back")
