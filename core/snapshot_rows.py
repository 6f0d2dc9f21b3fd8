"""Small query functions over branch and snapshot rows, shared by the persister and the migrations.

Every function takes an open Connection so the caller decides the transaction. The statements are
built once at import with bound parameters: building a SQLAlchemy statement costs more than
running it on SQLite, and a save runs six of them.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, LargeBinary, bindparam, cast, delete, func, insert, select, tuple_, update

from core.schema import App, ListItem, Snapshot, StateValue
from core.statecodec import EncodedSnapshot, Manifest, decode

_apps, _snaps, _values, _chunks = (m.__table__ for m in (App, Snapshot, StateValue, ListItem))

_FIND_APP = select(_apps.c.id, _apps.c.last_sequence_id).where(
    _apps.c.partition_key == bindparam("b_key"), _apps.c.app_id == bindparam("b_app"))
_FIND_APP_LOCKED = _FIND_APP.with_for_update()  # SQLite renders no FOR UPDATE; BEGIN IMMEDIATE locks there
_LATEST_APP = (select(_apps.c.app_id).where(_apps.c.partition_key == bindparam("b_key"))
               .order_by(_apps.c.activity.desc()).limit(1))
_INSERT_APP = insert(_apps).returning(_apps.c.id)
_INSERT_SNAPSHOT = insert(_snaps).returning(_snaps.c.id)
_INSERT_VALUE = insert(_values)
_INSERT_CHUNK = insert(_chunks)
_DELETE_CHUNKS = (delete(_chunks).where(
    _chunks.c.app_ref == bindparam("b_ref"), _chunks.c.key == bindparam("b_key"),
    _chunks.c.generation == bindparam("b_gen"), _chunks.c.idx >= bindparam("b_from"), _chunks.c.idx < bindparam("b_to"),
).returning(func.length(cast(_chunks.c.data, LargeBinary))))  # bytes, not characters
_MOVE_APP = update(_apps).where(_apps.c.id == bindparam("b_ref")).values(
    last_sequence_id=bindparam("b_seq"), activity=bindparam("b_activity"), updated_at=bindparam("b_now"))
_SNAPSHOT_AT = select(_snaps).where(_snaps.c.app_ref == bindparam("b_ref"), _snaps.c.sequence_id == bindparam("b_seq"))
_SNAPSHOT_LATEST = (select(_snaps).where(_snaps.c.app_ref == bindparam("b_ref"))
                    .order_by(_snaps.c.sequence_id.desc()).limit(1))
_VALUES = select(_values.c.key, _values.c.data).where(
    _values.c.app_ref == bindparam("b_ref"),
    tuple_(_values.c.key, _values.c.sequence_id).in_(bindparam("b_pointers", expanding=True)))
_CHUNKS = (select(_chunks.c.idx, _chunks.c.item_count, _chunks.c.data)
           .where(_chunks.c.app_ref == bindparam("b_ref"), _chunks.c.key == bindparam("b_key"),
                  _chunks.c.generation == bindparam("b_gen"), _chunks.c.idx < bindparam("b_len"))
           .order_by(_chunks.c.idx))


def find_app(conn: Connection, partition_key: str, app_id: str, *, lock: bool = False) -> Any | None:
    """The branch row (id, last_sequence_id), locked for update on databases that can."""
    return conn.execute(_FIND_APP_LOCKED if lock else _FIND_APP, {"b_key": partition_key, "b_app": app_id}).first()


def latest_app_id(conn: Connection, partition_key: str) -> str | None:
    return conn.execute(_LATEST_APP, {"b_key": partition_key}).scalar()


def insert_app(conn: Connection, partition_key: str, app_id: str, now: datetime, forked_from: tuple | None) -> int:
    from_app, from_seq = forked_from or (None, None)
    row = dict(partition_key=partition_key, app_id=app_id, created_at=now, updated_at=now, last_sequence_id=-1,
               activity=0, forked_from_app_id=from_app, forked_from_sequence_id=from_seq)
    return conn.execute(_INSERT_APP, row).scalar_one()


def insert_snapshot(
    conn: Connection, app_ref: int, sequence_id: int, position: str, status: str, now: datetime, enc: EncodedSnapshot
) -> tuple[int, int]:
    """Writes one snapshot and its new rows, then moves the branch's pointers.

    Returns (snapshot id, bytes it added: payload written minus the small chunks a merge deleted).
    """
    freed = 0
    for key, generation, start, end in enc.merged:
        params = {"b_ref": app_ref, "b_key": key, "b_gen": generation, "b_from": start, "b_to": end}
        freed += sum(size or 0 for (size,) in conn.execute(_DELETE_CHUNKS, params))
    stored = enc.written_bytes - freed
    snapshot_id = conn.execute(_INSERT_SNAPSHOT, dict(
        app_ref=app_ref, sequence_id=sequence_id, position=position, status=status, created_at=now,
        manifest=enc.manifest.to_json(), stored_bytes=stored)).scalar_one()
    if enc.values:
        conn.execute(_INSERT_VALUE, [dict(app_ref=app_ref, key=k, sequence_id=sequence_id, data=d) for k, d in enc.values])
    if enc.chunks:
        conn.execute(_INSERT_CHUNK, [dict(app_ref=app_ref, key=c.key, generation=c.generation, idx=c.start,
                                          item_count=c.count, data=c.data) for c in enc.chunks])
    conn.execute(_MOVE_APP, {"b_ref": app_ref, "b_seq": sequence_id, "b_activity": snapshot_id, "b_now": now})
    return snapshot_id, stored


def find_snapshot(conn: Connection, app_ref: int, sequence_id: int | None) -> Any | None:
    """The snapshot at `sequence_id`, or the branch's latest one."""
    if sequence_id is None:
        return conn.execute(_SNAPSHOT_LATEST, {"b_ref": app_ref}).first()
    return conn.execute(_SNAPSHOT_AT, {"b_ref": app_ref, "b_seq": sequence_id}).first()


def read_state(conn: Connection, app_ref: int, manifest: Manifest) -> tuple[dict[str, Any], set[str]]:
    """The serialized state a manifest describes, and the keys that need Burr's serde walk."""

    def fetch_values(pointers: dict[str, int]) -> dict[str, bytes]:
        rows = conn.execute(_VALUES, {"b_ref": app_ref, "b_pointers": list(pointers.items())})
        return {key: data for key, data in rows}

    def fetch_chunks(key: str, generation: int, length: int) -> list[tuple[int, int, str]]:
        params = {"b_ref": app_ref, "b_key": key, "b_gen": generation, "b_len": length}
        return [tuple(row) for row in conn.execute(_CHUNKS, params)]

    return decode(manifest, fetch_values, fetch_chunks)
