"""Schema ${up_revision}: ${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

Frozen: write out here every table definition and encoding this step needs. Never import
core.storage.schema, codec, rows or any other Burrow code: they describe the *current* format and
will change, and this file must do the same thing forever. Keep it runnable offline (`sql`):
plain `op.*` calls and SQL strings; where Python must touch rows, do it only when
`not context.is_offline_mode()` and print a comment (see 0002) otherwise.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
${imports if imports else ""}
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    raise NotImplementedError("Burrow's schema only moves forward: restore a backup to go back")
