"""Retention: conversations idle longer than BURROW_RETENTION_DAYS are deleted; pinned ones are kept.

`prune` deletes through the facade's `delete`, so a conversation's Burr tracker files go with it and
a reply being written is stopped first. It reads the catalog through the facade's listing (pinned
rows first, then by activity), one page at a time, and looks at each candidate again just before
deleting it, so a conversation written to or pinned meanwhile is kept.

On PostgreSQL several app and API processes share the database; one prunes at a time: a prune takes
a session advisory lock on a fixed key with `pg_try_advisory_lock` and skips (returns []) when another
process holds it. SQLite is one machine's file: deletes are idempotent, so two prunes are only waste.

`start_pruning` runs `prune` on start and then every `every_seconds` in a daemon thread, for the
Streamlit app (ui/services.py) and the API server (server/app.py's lifespan).
"""
from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, create_engine, make_url, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from core.users import MAINTENANCE
from core.errors import BusyError, StorageError
from core.storage import ConversationSummary

if TYPE_CHECKING:
    from core.chat import ChatService

log = logging.getLogger("core.retention")
LOCK_KEY = 0x62757270  # "burp": retention's advisory lock, apart from the migrations' "burr"
PAGE = 500


def cutoff(days: float, now: datetime | None = None) -> datetime:
    """The moment before which a conversation's last activity makes it prunable."""
    return (now or datetime.now(timezone.utc)) - timedelta(days=days)


def prune(service: "ChatService", now: datetime | None = None, dry_run: bool = False,
          skip_if_busy: bool = True) -> list[ConversationSummary]:
    """Deletes (or, on a dry run, only lists) unpinned conversations idle since before the cutoff;
    returns them. Nothing when retention is off, or when another process is pruning right now (then
    BusyError instead if not `skip_if_busy`: a command must say so, not report nothing to do)."""
    days = service.settings.retention_days
    if days is None:
        return []
    before, service = cutoff(days, now), service.as_user(MAINTENANCE)  # everyone's conversations
    with _one_pruner(service.settings.database_url) as mine:
        if not mine:
            log.info("another process is pruning conversations; skipped")
            if not skip_if_busy:
                raise BusyError("Another process is pruning old conversations right now; try again in a moment.")
            return []
        stale = [item for item in _everything(service) if _prunable(item, before)]
        if dry_run:
            return stale
        return [item for item in stale if _delete_if_still_stale(service, item.partition_key, before)]


def _prunable(item: ConversationSummary, before: datetime) -> bool:
    return not item.pinned and item.updated_at < before


def _everything(service: "ChatService") -> Iterator[ConversationSummary]:
    """Every conversation, page by page (the listing's cursor knows pinned from unpinned rows)."""
    cursor = None
    while page := service.conversations("", PAGE, cursor):
        yield from page
        cursor = page[-1].cursor


def _delete_if_still_stale(service: "ChatService", partition_key: str, before: datetime) -> bool:
    """Looks again just before deleting: a message sent or a pin set since the listing keeps it."""
    current = service.conversation(partition_key)
    if current is None or not _prunable(current, before):
        return False
    service.delete(partition_key)
    log.info("retention deleted conversation %s (idle since %s)", partition_key, current.updated_at.isoformat())
    return True


@contextlib.contextmanager
def _one_pruner(database_url: str) -> Iterator[bool]:
    """Yields whether this process may prune: always on SQLite; on PostgreSQL, if it got the lock."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        yield True
        return
    engine = create_engine(url, poolclass=NullPool)  # one short-lived session: the lock is the session's
    try:
        with _connected(engine) as conn:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar())
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
                    conn.commit()
    finally:
        engine.dispose()


@contextlib.contextmanager
def _connected(engine: Engine) -> Iterator[Connection]:
    try:
        conn = engine.connect()
    except SQLAlchemyError as exc:
        raise StorageError(f"Could not reach the database to prune old conversations: {exc}") from exc
    with conn:
        yield conn


def start_pruning(service: "ChatService", every_seconds: float = 3600) -> Callable[[], None]:
    """Prunes now and every `every_seconds` in a daemon thread; returns `stop()`. When retention is
    off nothing starts (the returned stop does nothing). A failed prune is logged and tried again later."""
    if service.settings.retention_days is None:
        return lambda: None
    stopped = threading.Event()

    def loop() -> None:
        while not stopped.is_set():
            _prune_logged(service)
            stopped.wait(every_seconds)

    thread = threading.Thread(target=loop, name="burrow-retention", daemon=True)
    thread.start()

    def stop() -> None:
        stopped.set()
        thread.join(timeout=10)

    return stop


def _prune_logged(service: "ChatService") -> None:
    try:
        deleted = prune(service)
    except Exception as exc:  # noqa: BLE001 - the database down for a while: the thread lives, the next round retries
        log.warning("pruning old conversations failed: %s", exc, exc_info=exc)
        return
    if deleted:
        log.info("retention deleted %d conversations", len(deleted))
