"""Feedback on replies: the `burrow_feedback` table (one row per rated reply), read and written here only.

A rating is keyed by the step that wrote the reply (conversation, branch, sequence id), so every
branch that shares the reply shows the same rating, and it stays outside Burr state: it is never
part of the history sent to the model. `Feedback.annotation()` gives it in the shape of Burr's
tracking-server annotations (step, tags, observations with thumbs and a note), for evaluation sets.
"""
from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, select

from core.errors import InputError
from core.storage.schema import Feedback as FeedbackRow, as_utc
from core.text import plain_text

if TYPE_CHECKING:
    from core.storage.engine import Database

MAX_COMMENT_CHARS = 2000
MAX_TAGS = 20


@dataclasses.dataclass(frozen=True)
class Feedback:
    """A user's rating of one reply."""

    partition_key: str
    app_id: str
    sequence_id: int
    message_index: int
    thumbs_up: bool | None
    comment: str | None
    tags: tuple[str, ...]
    created_at: datetime
    updated_at: datetime

    def annotation(self, step_name: str = "ai_response") -> dict[str, Any]:
        """Burr's annotation shape (its tracking server's AnnotationCreate plus where it belongs)."""
        return {"partition_key": self.partition_key, "app_id": self.app_id, "step_sequence_id": self.sequence_id,
                "step_name": step_name, "span_id": None, "tags": list(self.tags),
                "observations": [{"data_fields": {"note": self.comment or ""},
                                  "thumbs_up_thumbs_down": self.thumbs_up,
                                  "data_pointers": [{"type": "state_field", "field_name": "chat_history",
                                                     "span_id": None}]}],
                "created": self.created_at.isoformat(), "updated": self.updated_at.isoformat()}


class FeedbackStore:
    """Set, change, clear and list ratings of one database."""

    def __init__(self, database: "Database"):
        self.database = database

    def set(self, partition_key: str, app_id: str, sequence_id: int, message_index: int, *,
            thumbs_up: bool | None, comment: str | None = None, tags: tuple[str, ...] = ()) -> Feedback:
        """Creates or replaces the rating of a reply (thumbs None and no comment clears it)."""
        comment = _clean_comment(comment)
        tags = _clean_tags(tags)
        key, now = partition_key or "", datetime.now(timezone.utc)

        def work(conn: Connection) -> datetime | None:
            where = _where(key, app_id, sequence_id)
            created = conn.execute(select(FeedbackRow.created_at).where(*where)).scalar()
            conn.execute(delete(FeedbackRow).where(*where))
            if thumbs_up is None and not comment and not tags:
                return None
            conn.execute(FeedbackRow.__table__.insert().values(
                partition_key=key, app_id=app_id, sequence_id=sequence_id, message_index=message_index,
                thumbs_up=thumbs_up, comment=comment, tags=json.dumps(list(tags)), created_at=created or now,
                updated_at=now))
            return created or now

        created = self.database.write(work)
        return Feedback(key, app_id, sequence_id, message_index, thumbs_up, comment, tags, as_utc(created or now), now)

    def of_conversation(self, partition_key: str) -> list[Feedback]:
        """Every rating in a conversation (all branches), oldest step first."""
        query = (select(FeedbackRow).where(FeedbackRow.partition_key == (partition_key or ""))
                 .order_by(FeedbackRow.app_id, FeedbackRow.sequence_id))
        return self.database.read(lambda conn: [_feedback(row) for row in conn.execute(query)])


def forget_feedback(conn: Connection, partition_key: str) -> None:
    """Deletes a conversation's ratings (inside the caller's delete transaction)."""
    conn.execute(delete(FeedbackRow).where(FeedbackRow.partition_key == partition_key))


def _where(key: str, app_id: str, sequence_id: int) -> tuple:
    return (FeedbackRow.partition_key == key, FeedbackRow.app_id == app_id, FeedbackRow.sequence_id == sequence_id)


def _clean_comment(comment: str | None) -> str | None:
    text = plain_text(comment or "").strip()
    if len(text) > MAX_COMMENT_CHARS:
        raise InputError(f"The comment has {len(text):,} characters; the limit is {MAX_COMMENT_CHARS:,}.")
    return text or None


def _clean_tags(tags: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    cleaned = tuple(dict.fromkeys(t for t in (plain_text(str(tag)).strip()[:40] for tag in tags) if t))
    if len(cleaned) > MAX_TAGS:
        raise InputError(f"At most {MAX_TAGS} tags per reply.")
    return cleaned


def _feedback(row: Any) -> Feedback:
    return Feedback(row.partition_key, row.app_id, row.sequence_id, row.message_index, row.thumbs_up, row.comment,
                    tuple(json.loads(row.tags or "[]")), as_utc(row.created_at), as_utc(row.updated_at))
