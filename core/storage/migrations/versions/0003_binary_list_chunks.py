"""Schema 0003: list chunks as bytes with a codec byte, so new chunks can be LZ4-compressed.

Revision ID: 0003
Revises: 0002
Create Date: 2025-03-01

Each v2 chunk (JSON text) becomes b"j" + its UTF-8 bytes; chunks written from now on start with
b"4" (LZ4) or b"j". Each conversation's size grows by the one codec byte per chunk. Pure SQL, so the
printed (offline) script does all of it. Frozen: the v3 chunk table is written out here.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
COLUMNS = "app_ref, key, generation, idx, item_count"
LZ4_TOAST = """DO $$ BEGIN
  IF EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)) THEN
    EXECUTE 'ALTER TABLE burrow_list_items ALTER COLUMN data SET COMPRESSION lz4';
  END IF;
END $$"""
ONE_BYTE_PER_CHUNK = """UPDATE burrow_conversations SET stored_bytes = stored_bytes + (
  SELECT count(*) FROM burrow_list_items JOIN burrow_apps ON burrow_apps.id = burrow_list_items.app_ref
  WHERE burrow_apps.partition_key = burrow_conversations.partition_key)"""


def upgrade() -> None:
    postgres = op.get_context().dialect.name == "postgresql"
    if context.is_offline_mode() or not _already_binary(op.get_bind()):
        if postgres:
            op.execute("ALTER TABLE burrow_list_items ALTER COLUMN data TYPE bytea "
                       "USING convert_to('j' || data, 'UTF8')")
        else:
            _rebuild_for_sqlite()
        op.execute(ONE_BYTE_PER_CHUNK)
    if postgres:  # the type change may reset the column's compression: ask for lz4 again (where available)
        op.execute(LZ4_TOAST)


def downgrade() -> None:
    raise NotImplementedError("Burrow's schema only moves forward: restore a backup to go back")


def _already_binary(conn: sa.Connection) -> bool:
    """A database some earlier build left with binary chunks needs no rewrite (and must not get one)."""
    column = next(c for c in sa.inspect(conn).get_columns("burrow_list_items") if c["name"] == "data")
    return isinstance(column["type"], sa.LargeBinary)


def _rebuild_for_sqlite() -> None:
    """SQLite cannot change a column's type: the table is rebuilt, converting each row."""
    op.rename_table("burrow_list_items", "burrow_list_items_v2")
    op.create_table(
        "burrow_list_items",
        sa.Column("app_ref", BigId, sa.ForeignKey("burrow_apps.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("generation", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("idx", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("item_count", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.execute(f"INSERT INTO burrow_list_items ({COLUMNS}, data) "
               f"SELECT {COLUMNS}, CAST('j' || data AS BLOB) FROM burrow_list_items_v2")
    op.drop_table("burrow_list_items_v2")
