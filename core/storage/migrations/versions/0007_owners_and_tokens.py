"""Schema 0007: every conversation has an owner; users who signed in, and their API tokens.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

`burrow_conversations.owner` is "local" for every existing row (the one user of a Burrow without
sign-in); `burrow owner --to <user>` hands them to a signed-in user. An index on (owner, pinned,
activity) keeps a user's listing on an index. `burrow_users` remembers who signed in (subject,
e-mail, name); `burrow_api_tokens` holds a SHA-256 per token, never the token.
Additive: a release at 0006 keeps working on a database at 0007 (its inserts get the "local" default).
Frozen: the column, index and tables are written out here.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("burrow_conversations",
                  sa.Column("owner", sa.String(255), nullable=False, server_default="local"))
    op.create_index("ix_burrow_conversations_owner_listing", "burrow_conversations", ["owner", "pinned", "activity"])
    op.create_table(
        "burrow_users",
        sa.Column("subject", sa.String(255), primary_key=True),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("name", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_burrow_users_email", "burrow_users", ["email"])
    op.create_table(
        "burrow_api_tokens",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_burrow_api_tokens_owner", "burrow_api_tokens", ["owner"])


def downgrade() -> None:
    raise NotImplementedError("Burrow's schema only moves forward: restore a backup to go back")
