"""Schema 0005: feedback on replies (thumbs, a comment, tags), in the shape of Burr's annotations,
and the facts of a failed reply (model, timings) next to its error.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

One row per rated reply, keyed by the step that wrote it: (conversation, branch, sequence id), plus
the message's index so a page can find it without reading steps. `burrow_snapshots.facts` is JSON
kept with a failed step's error (a reply that was saved carries its facts in the message itself).
Additive: a release at 0004 keeps working on a database at 0005 (it never reads either).
Frozen: the table and column are written out here.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "burrow_feedback",
        sa.Column("partition_key", sa.String(255), primary_key=True),
        sa.Column("app_id", sa.String(255), primary_key=True),
        sa.Column("sequence_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("message_index", sa.Integer, nullable=False),
        sa.Column("thumbs_up", sa.Boolean, nullable=True),
        sa.Column("comment", sa.Text, nullable=True),
        sa.Column("tags", sa.Text, nullable=False, server_default="[]"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.add_column("burrow_snapshots", sa.Column("facts", sa.Text, nullable=True))


def downgrade() -> None:
    raise NotImplementedError("Burrow's schema only moves forward: restore a backup to go back")
