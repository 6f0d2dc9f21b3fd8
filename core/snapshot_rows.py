"""Small query functions over branch and snapshot rows, shared by the persister and the migrations.

Every function takes an open Connection so the caller decides the transaction; all SQL is
SQLAlchemy expressions with bound parameters.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, insert, or_, select, update

from core.schema import App, ListItem, Snapshot, StateValue
from core.statecodec import EncodedSnapshot, Manifest, decode


def find_app(conn: Connection, partition_key: str, app_id: str, *, lock: bool = False) -> Any | None:
    """The branch row (id, last_sequence_id), locked for update on databases that can."""
    query = select(App.id, App.last_sequence_id).where(App.partition_key == partition_key, App.app_id == app_id)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).first()


def latest_app_id(conn: Connection, partition_key: str) -> str | None:
    query = select(App.app_id).where(App.partition_key == partition_key).order_by(App.activity.desc()).limit(1)
    return conn.execute(query).scalar()


def insert_app(conn: Connection, partition_key: str, app_id: str, now: datetime, forked_from: tuple | None) -> int:
    from_app, from_seq = forked_from or (None, None)
    row = dict(partition_key=partition_key, app_id=app_id, created_at=now, updated_at=now, last_sequence_id=-1,
               activity=0, forked_from_app_id=from_app, forked_from_sequence_id=from_seq)
    return conn.execute(insert(App).values(**row).returning(App.id)).scalar_one()


def insert_snapshot(
    conn: Connection, app_ref: int, sequence_id: int, position: str, status: str, now: datetime, enc: EncodedSnapshot
) -> int:
    """Writes one snapshot and its new rows, then moves the branch's pointers; returns the snapshot id."""
    snapshot_id = conn.execute(
        insert(Snapshot)
        .values(app_ref=app_ref, sequence_id=sequence_id, position=position, status=status, created_at=now,
                manifest=enc.manifest.to_json(), stored_bytes=enc.stored_bytes)
        .returning(Snapshot.id)
    ).scalar_one()
    if enc.values:
        conn.execute(insert(StateValue), [
            dict(app_ref=app_ref, key=k, sequence_id=sequence_id, data=d) for k, d in enc.values])
    if enc.items:
        conn.execute(insert(ListItem), [
            dict(app_ref=app_ref, key=k, generation=g, idx=i, data=d) for k, g, i, d in enc.items])
    conn.execute(update(App).where(App.id == app_ref).values(
        last_sequence_id=sequence_id, activity=snapshot_id, updated_at=now))
    return snapshot_id


def find_snapshot(conn: Connection, app_ref: int, sequence_id: int | None) -> Any | None:
    """The snapshot at `sequence_id`, or the branch's latest one."""
    query = select(Snapshot).where(Snapshot.app_ref == app_ref)
    if sequence_id is not None:
        query = query.where(Snapshot.sequence_id == sequence_id)
    return conn.execute(query.order_by(Snapshot.sequence_id.desc()).limit(1)).first()


def read_state(conn: Connection, app_ref: int, manifest: Manifest) -> dict[str, Any]:
    """The serialized state a manifest describes, read with one query per kind of row."""

    def fetch_values(pointers: dict[str, int]) -> dict[str, bytes]:
        wanted = or_(*(and_(StateValue.key == k, StateValue.sequence_id == s) for k, s in pointers.items()))
        rows = conn.execute(select(StateValue.key, StateValue.data).where(StateValue.app_ref == app_ref, wanted))
        return {key: data for key, data in rows}

    def fetch_items(key: str, generation: int, length: int) -> list[bytes]:
        rows = conn.execute(
            select(ListItem.data)
            .where(ListItem.app_ref == app_ref, ListItem.key == key, ListItem.generation == generation,
                   ListItem.idx < length)
            .order_by(ListItem.idx)
        )
        return [data for (data,) in rows]

    return decode(manifest, fetch_values, fetch_items)
