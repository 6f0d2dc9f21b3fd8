"""Schema 0004: branch leases (who is running a turn on a branch right now) and failure reasons on steps.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

`burrow_leases` lets a writer know, instead of guess from timestamps, whether another process is
midway through a turn on a branch (core/storage/leases.py). `burrow_snapshots.error` keeps the
user-facing reason a failed step failed, so it can still be shown after a reload. Both are
additive: a release at 0003 keeps working on a database at 0004 (it never reads them).
Frozen: the table and column are written out here.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "burrow_leases",
        sa.Column("partition_key", sa.String(255), primary_key=True),
        sa.Column("app_id", sa.String(255), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("acquired_at", sa.Double, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
        sa.Column("stop_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.add_column("burrow_snapshots", sa.Column("error", sa.Text, nullable=True))  # in place on both databases


def downgrade() -> None:
    raise NotImplementedError("Burrow's schema only moves forward: restore a backup to go back")
