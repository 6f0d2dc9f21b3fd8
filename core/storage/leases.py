"""Branch leases: which writer is running a turn on a branch right now, known instead of guessed.

The only code that reads or writes `burrow_leases`. A turn takes its branch's lease before it saves
the user's message and gives it back after the reply is saved; while it streams, the lease is
renewed (core/writers.py does that every few seconds). A lease whose owner died (a killed server)
simply expires, and the next writer takes it at once. Taking a lease is one atomic statement
(an upsert that only overwrites an expired lease or the owner's own), on SQLite and PostgreSQL.

Expiry times are the writers' wall clocks (seconds since the epoch): servers sharing a database
are expected to keep their clocks in sync (NTP); a lease lasts several times any usual skew.
"""
from __future__ import annotations

import dataclasses
import time

from sqlalchemy import Connection, and_, delete, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from core.storage.engine import Database
from core.storage.schema import Lease

_leases = Lease.__table__


@dataclasses.dataclass(frozen=True)
class LeaseHolder:
    owner: str
    expires_at: float  # seconds since the epoch


class LeaseStore:
    """Take, renew, give back and look up branch leases."""

    def __init__(self, database: Database):
        self.database = database

    def acquire(self, partition_key: str, app_id: str, owner: str, ttl: float) -> bool:
        """Takes the lease if it is free, expired or already `owner`'s; False if someone else holds it."""
        now = time.time()
        insert = (postgresql.insert if self.database.dialect == "postgresql" else sqlite.insert)(_leases)
        statement = insert.values(partition_key=partition_key, app_id=app_id, owner=owner, acquired_at=now,
                                  expires_at=now + ttl, stop_requested=False).on_conflict_do_update(
            index_elements=[_leases.c.partition_key, _leases.c.app_id],
            set_=dict(owner=insert.excluded.owner, acquired_at=insert.excluded.acquired_at,
                      expires_at=insert.excluded.expires_at, stop_requested=False),
            where=or_(_leases.c.expires_at < now, _leases.c.owner == insert.excluded.owner),
        ).returning(_leases.c.owner)
        return self.database.write(lambda conn: conn.execute(statement).first() is not None)

    def renew(self, owner: str, branches: list[tuple[str, str]], ttl: float) -> dict[tuple[str, str], bool]:
        """Extends `owner`'s leases on `branches`; returns the ones it still holds (others were taken
        over after they expired), each with whether someone asked for its turn to stop."""
        if not branches:
            return {}
        statement = (update(_leases).where(_leases.c.owner == owner,
                                          tuple_(_leases.c.partition_key, _leases.c.app_id).in_(branches))
                     .values(expires_at=time.time() + ttl)
                     .returning(_leases.c.partition_key, _leases.c.app_id, _leases.c.stop_requested))
        return self.database.write(lambda conn: {(key, app): bool(stop) for key, app, stop in conn.execute(statement)})

    def request_stop(self, partition_key: str, app_id: str | None = None) -> bool:
        """Asks whoever runs a turn on this conversation (one branch, or any) to stop; False if nobody does."""
        where = [_leases.c.partition_key == partition_key, _leases.c.expires_at >= time.time()]
        if app_id is not None:
            where.append(_leases.c.app_id == app_id)
        statement = update(_leases).where(*where).values(stop_requested=True)
        return self.database.write(lambda conn: conn.execute(statement).rowcount > 0)

    def release(self, partition_key: str, app_id: str, owner: str) -> None:
        statement = delete(_leases).where(_leases.c.partition_key == partition_key, _leases.c.app_id == app_id,
                                          _leases.c.owner == owner)
        self.database.write(lambda conn: conn.execute(statement))

    def holder(self, partition_key: str, app_id: str) -> LeaseHolder | None:
        """The live lease on a branch, if any (an expired one counts as none)."""
        statement = select(_leases.c.owner, _leases.c.expires_at).where(
            _leases.c.partition_key == partition_key, _leases.c.app_id == app_id, _leases.c.expires_at >= time.time())
        row = self.database.read(lambda conn: conn.execute(statement).first())
        return LeaseHolder(row.owner, row.expires_at) if row else None

    def live_partitions(self, partition_keys: list[str]) -> set[str]:
        """Which of these conversations have a turn running somewhere right now (any branch)."""
        if not partition_keys:
            return set()
        statement = select(_leases.c.partition_key).where(
            _leases.c.partition_key.in_(partition_keys), _leases.c.expires_at >= time.time()).distinct()
        return self.database.read(lambda conn: set(conn.execute(statement).scalars()))


def forget_conversation(conn: Connection, partition_key: str) -> None:
    """Removes a deleted conversation's leases (called inside the catalog's delete transaction)."""
    conn.execute(delete(_leases).where(and_(_leases.c.partition_key == partition_key)))
