"""Schema 0001, the first release: one full `State.serialize()` JSON per snapshot, and the catalog.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Frozen: the tables as the first release created them, written out here. Like every revision it
never imports Burrow's code, so a later change to the current schema cannot change what it does.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "burrow_snapshots",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("partition_key", sa.String(255), nullable=False),
        sa.Column("app_id", sa.String(255), nullable=False),
        sa.Column("sequence_id", sa.Integer, nullable=False),
        sa.Column("position", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state_json", sa.Text, nullable=False),
        sa.UniqueConstraint("partition_key", "app_id", "sequence_id", name="uq_burrow_snapshots_v1_step"),
    )
    op.create_table(
        "burrow_conversations",
        sa.Column("partition_key", sa.String(255), primary_key=True),
        sa.Column("title", sa.Text),
        sa.Column("title_custom", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("activity", sa.BigInteger, nullable=False),
        sa.Column("message_count", sa.Integer, nullable=False),
        sa.Column("latest_app_id", sa.String(255), nullable=False),
    )
    op.create_index("ix_burrow_conversations_activity", "burrow_conversations", ["activity"])


def downgrade() -> None:
    raise NotImplementedError("Burrow's schema only moves forward: restore a backup to go back")
