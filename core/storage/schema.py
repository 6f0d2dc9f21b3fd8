"""Burrow's current database schema, as SQLAlchemy 2.0 typed models (the one place it is described).

How a snapshot is stored (schema 0007; migrations/ has how older databases reach it):
- `burrow_apps`: one row per branch (partition key + Burr app_id), with its last sequence id.
- `burrow_snapshots`: one row per Burr step: position, status, and a small JSON *manifest* saying
  where each state key lives: small values inline, big values as a pointer to a `burrow_values`
  row (written only when the value changed), lists as (generation, length) over chunks of items in
  `burrow_list_items` (an appended list only adds its new items, merged every 64 items into one row,
  stored as LZ4-compressed JSON since version 3).
  Loading any snapshot reads just that state's rows.
- `burrow_conversations`: the catalog the sidebar lists (pinned first), so listing never touches snapshots.
- `burrow_feedback`: a user's rating of a reply, keyed by the step that wrote the reply.
- `burrow_users` and `burrow_api_tokens`: who has signed in, and their API tokens (hashes only).
  Every conversation has an `owner` (a user's subject, see core/users.py); "local" without sign-in.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (BigInteger, DateTime, Double, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint,
                        false)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

LOCAL_OWNER = "local"  # the owner of every conversation when nobody signs in (BURROW_AUTH=none)

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class Conversation(Base):
    """Catalog row per partition key; `activity` is the id of its newest snapshot (exact ordering)."""

    __tablename__ = "burrow_conversations"
    partition_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    title: Mapped[str | None] = mapped_column(Text)
    title_custom: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    activity: Mapped[int] = mapped_column(BigInteger)
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    latest_app_id: Mapped[str] = mapped_column(String(255))
    stored_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    pinned: Mapped[bool] = mapped_column(server_default=false())  # listed first, never pruned (no Python default:
    # an INSERT ... SELECT of the step columns, rows.py, would send NULL for it)
    owner: Mapped[str] = mapped_column(String(255), server_default=LOCAL_OWNER)  # set by the first save only

    __table_args__ = (Index("ix_burrow_conversations_activity", "activity"),
                      Index("ix_burrow_conversations_pinned_activity", "pinned", "activity"),
                      Index("ix_burrow_conversations_owner_listing", "owner", "pinned", "activity"))


class App(Base):
    """One branch of a conversation: the original run or a fork."""

    __tablename__ = "burrow_apps"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    partition_key: Mapped[str] = mapped_column(String(255))
    app_id: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_sequence_id: Mapped[int] = mapped_column(Integer)
    activity: Mapped[int] = mapped_column(BigInteger)
    forked_from_app_id: Mapped[str | None] = mapped_column(String(255))
    forked_from_sequence_id: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        UniqueConstraint("partition_key", "app_id", name="uq_burrow_apps_key"),
        Index("ix_burrow_apps_partition_activity", "partition_key", "activity"),
    )


class Snapshot(Base):
    """One persisted Burr step. `manifest` is JSON; `id` gives a total order across all writers."""

    __tablename__ = "burrow_snapshots"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    app_ref: Mapped[int] = mapped_column(ForeignKey("burrow_apps.id", ondelete="CASCADE"))
    sequence_id: Mapped[int] = mapped_column(Integer)
    position: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    manifest: Mapped[str] = mapped_column(Text)
    stored_bytes: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)  # why a failed step failed, as the user was told
    facts: Mapped[str | None] = mapped_column(Text)  # JSON facts of the reply that failed there (core/facts.py)

    __table_args__ = (UniqueConstraint("app_ref", "sequence_id", name="uq_burrow_snapshots_step"),)


class StateValue(Base):
    """A big non-list state value, stored once per change (data: b'j' + JSON or b'z' + zlib(JSON))."""

    __tablename__ = "burrow_values"
    app_ref: Mapped[int] = mapped_column(ForeignKey("burrow_apps.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    sequence_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class ListItem(Base):
    """A chunk of a list in state: items [idx, idx + item_count), data: b'4' + LZ4(JSON array) or
    b'j' + JSON (see statecodec).

    A list rewritten (not just appended to) starts a new generation.
    """

    __tablename__ = "burrow_list_items"
    app_ref: Mapped[int] = mapped_column(ForeignKey("burrow_apps.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    generation: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    item_count: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Lease(Base):
    """Who is running a turn on a branch right now, until when (see leases.py)."""

    __tablename__ = "burrow_leases"
    partition_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    acquired_at: Mapped[float] = mapped_column(Double)  # seconds since the epoch, the writer's clock
    expires_at: Mapped[float] = mapped_column(Double)
    stop_requested: Mapped[bool] = mapped_column(default=False)  # Stop pressed on another server


class Feedback(Base):
    """A rating of one reply: thumbs up/down, a comment and tags (Burr's annotation fields), keyed by
    the step that wrote the reply; `message_index` is the reply's place in the branch's history."""

    __tablename__ = "burrow_feedback"
    partition_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    sequence_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    message_index: Mapped[int] = mapped_column(Integer)
    thumbs_up: Mapped[bool | None] = mapped_column()
    comment: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[str] = mapped_column(Text, default="[]", server_default="[]")  # JSON list of strings
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class User(Base):
    """Someone who signed in: `subject` is what conversations' `owner` holds (never the e-mail, which can
    change or be reused); e-mail and name are as the provider last said, for admins and the hand-over command."""

    __tablename__ = "burrow_users"
    subject: Mapped[str] = mapped_column(String(255), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_burrow_users_email", "email"),)


class ApiToken(Base):
    """A personal API token: only its SHA-256 is stored (the token itself is shown once, at creation)."""

    __tablename__ = "burrow_api_tokens"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_burrow_api_tokens_owner", "owner"),)


TABLES = [m.__table__ for m in (Conversation, App, Snapshot, StateValue, ListItem, Lease, Feedback, User, ApiToken)]


class SearchMessage(Base):
    """One message of one branch that its parent does not share, as text for full-text search
    (search_index.py writes it, search.py reads it). SQLite indexes it in the FTS5 table `burrow_search_fts`
    (rowid = id); PostgreSQL in a stored `tsv` column (migration 0009) and a GIN index of its lexemes keyed
    by block of ids (migration 0010)."""

    __tablename__ = "burrow_search_messages"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    partition_key: Mapped[str] = mapped_column(String(255))
    app_id: Mapped[str] = mapped_column(String(255))
    idx: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(32))
    content: Mapped[str] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("partition_key", "app_id", "idx", name="uq_burrow_search_messages_place"),)


def as_utc(value: datetime) -> datetime:
    """A stored timestamp in UTC: SQLite gives the columns' values back without their zone."""
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
