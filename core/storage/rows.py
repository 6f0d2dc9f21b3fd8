"""Small query functions over branch and snapshot rows, shared by the persister and the migrations.

Every function takes an open Connection so the caller decides the transaction. The statements are
built once at import with bound parameters: building a SQLAlchemy statement costs more than
running it on SQLite, and a save runs six of them. On PostgreSQL, where each statement is a round
trip to the server, the usual save (see `fast_save`) is one statement instead.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (Connection, DateTime, Integer, LargeBinary, String, Text, bindparam, cast, delete, false, func,
                        insert, true, literal_column, select, tuple_, union_all, update)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY

from core.storage.catalog import STEP_COLUMNS, step_upsert_from
from core.storage.listcache import Branch, CachedList, ListPrefixCache
from core.storage.schema import App, ListItem, SearchMessage, Snapshot, StateValue
from core.storage.codec import HAS_SERDE_MARKER, EncodedSnapshot, Manifest, assemble_list, decode

_apps, _snaps, _values, _chunks, _search = (m.__table__ for m in (App, Snapshot, StateValue, ListItem, SearchMessage))

_FIND_APP = select(_apps.c.id, _apps.c.last_sequence_id, _apps.c.created_at).where(
    _apps.c.partition_key == bindparam("b_key"), _apps.c.app_id == bindparam("b_app"))
_FIND_APP_LOCKED = _FIND_APP.with_for_update()  # SQLite renders no FOR UPDATE; BEGIN IMMEDIATE locks there
_INSERT_APP = insert(_apps).returning(_apps.c.id)
_INSERT_SNAPSHOT = insert(_snaps).returning(_snaps.c.id)
_INSERT_VALUE = insert(_values)
_INSERT_CHUNK = insert(_chunks)
_DELETE_CHUNKS = (delete(_chunks).where(
    _chunks.c.app_ref == bindparam("b_ref"), _chunks.c.key == bindparam("b_key"),
    _chunks.c.generation == bindparam("b_gen"), _chunks.c.idx >= bindparam("b_from"), _chunks.c.idx < bindparam("b_to"),
).returning(func.length(_chunks.c.data)))
# Blobs are read in the driver's binary format where it has one (psycopg 3): bytea as text would be
# hex, twice the bytes to move and decode (see create_burrow_engine).
_BINARY = {"burrow_binary_results": True}
_MOVE_APP = update(_apps).where(_apps.c.id == bindparam("b_ref")).values(
    last_sequence_id=bindparam("b_seq"), activity=bindparam("b_activity"), updated_at=bindparam("b_now"))
_SNAPSHOT_LATEST = (select(_snaps).where(_snaps.c.app_ref == bindparam("b_ref"))
                    .order_by(_snaps.c.sequence_id.desc()).limit(1))
# A load finds the branch and its snapshot in one statement (one round trip to a database server).
_BRANCH_SNAPSHOT = (select(_apps.c.id.label("app_ref"), _apps.c.app_id, _apps.c.created_at.label("branch_created_at"),
                           _snaps.c.sequence_id, _snaps.c.position, _snaps.c.status, _snaps.c.created_at,
                           _snaps.c.manifest)
                    .join(_snaps, _snaps.c.app_ref == _apps.c.id)
                    .where(_apps.c.partition_key == bindparam("b_key")))
_SNAPSHOT_AT = _BRANCH_SNAPSHOT.where(_apps.c.app_id == bindparam("b_app"), _snaps.c.sequence_id == bindparam("b_seq"))
_BRANCH_LATEST = _BRANCH_SNAPSHOT.where(_apps.c.app_id == bindparam("b_app"),
                                        _snaps.c.sequence_id == _apps.c.last_sequence_id)
_NEWEST_BRANCH_LATEST = (_BRANCH_SNAPSHOT.where(_snaps.c.sequence_id == _apps.c.last_sequence_id)
                         .order_by(_apps.c.activity.desc()).limit(1))
_VALUES_WHERE = (_values.c.app_ref == bindparam("b_ref"),
                 tuple_(_values.c.key, _values.c.sequence_id).in_(bindparam("b_pointers", expanding=True)))
_VALUES = select(_values.c.key, _values.c.data).where(*_VALUES_WHERE).execution_options(**_BINARY)
# The chunks holding items [b_have, b_len) of a list: those starting below b_len and ending past b_have.
_CHUNKS_WHERE = (_chunks.c.app_ref == bindparam("b_ref"), _chunks.c.key == bindparam("b_key"),
                 _chunks.c.generation == bindparam("b_gen"), _chunks.c.idx < bindparam("b_len"),
                 _chunks.c.idx + _chunks.c.item_count > bindparam("b_have"))
_CHUNKS = (select(_chunks.c.idx, _chunks.c.item_count, _chunks.c.data).where(*_CHUNKS_WHERE)
           .order_by(_chunks.c.idx).execution_options(**_BINARY))
# The shape of a chat state (big values and one list) in one round trip: values (kind 0), then chunks.
_ZERO = literal_column("0", Integer)
_VALUES_AND_CHUNKS = union_all(
    select(_ZERO.label("kind"), _values.c.key, _ZERO.label("idx"), _ZERO.label("item_count"), _values.c.data)
    .where(*_VALUES_WHERE),
    select(literal_column("1", Integer).label("kind"), _chunks.c.key, _chunks.c.idx, _chunks.c.item_count,
           _chunks.c.data).where(*_CHUNKS_WHERE),
).execution_options(**_BINARY)



def _typed(name: str, type_: Any) -> Any:
    return cast(bindparam(name), type_)  # PostgreSQL infers no type for a bare parameter in a SELECT list


def _unnest(*columns: tuple[str, Any]) -> Any:
    """Rows from parallel arrays, one array parameter per column: any number of rows in one statement."""
    arrays = (_typed(f"a_{name}", ARRAY(type_)) for name, type_ in columns)
    rows = func.unnest(*arrays).table_valued(*(name for name, _ in columns))
    return rows.render_derived(name=f"rows_{columns[0][0]}")


def _cross(left: Any, right: Any) -> Any:
    """Every row of `left` with every row of `right` (one of them has at most one row)."""
    return left.join(right, true())


def _fast_save() -> Any:
    """A save as one PostgreSQL statement: the rows of `insert_snapshot` (without a merge) and of
    `catalog.record_step`, written only if the branch is still at the step this process last saved.

    The snapshot id is drawn first (nextval), so the guarded UPDATE of the branch can set its activity
    and every insert selects from what that UPDATE returned: branch not moved, nothing written. One
    statement is atomic by itself, so it needs no BEGIN/COMMIT round trips either.
    """
    seq, now = _typed("b_seq", Integer), _typed("b_now", DateTime(timezone=True))
    ids = select(func.nextval(func.pg_get_serial_sequence(_snaps.name, "id")).label("id")).cte("ids")
    moved = (update(_apps)
             .where(_apps.c.partition_key == bindparam("b_key"), _apps.c.app_id == bindparam("b_app"),
                    _apps.c.last_sequence_id == bindparam("b_expected"))
             .values(last_sequence_id=bindparam("b_seq"), activity=select(ids.c.id).scalar_subquery(),
                     updated_at=bindparam("b_now"))
             .returning(_apps.c.id).cte("moved"))
    snapshot_row = select(ids.c.id, moved.c.id, seq, _typed("b_position", String), _typed("b_status", String), now,
                          _typed("b_manifest", Text), _typed("b_stored", Integer)).select_from(_cross(ids, moved))
    snapshot = (insert(_snaps).from_select(["id", "app_ref", "sequence_id", "position", "status", "created_at",
                                            "manifest", "stored_bytes"], snapshot_row)
                .returning(_snaps.c.id).cte("snapshot"))
    values = _unnest(("key", String), ("data", LargeBinary))
    new_values = insert(_values).from_select(["app_ref", "key", "sequence_id", "data"], select(
        moved.c.id, values.c.key, seq, values.c.data).select_from(_cross(moved, values))).cte("new_values")
    chunks = _unnest(("ckey", String), ("gen", Integer), ("idx", Integer), ("count", Integer), ("cdata", LargeBinary))
    new_chunks = insert(_chunks).from_select(["app_ref", "key", "generation", "idx", "item_count", "data"], select(
        moved.c.id, chunks.c.ckey, chunks.c.gen, chunks.c.idx, chunks.c["count"], chunks.c.cdata,
    ).select_from(_cross(moved, chunks))).cte("new_chunks")
    step = dict(partition_key=_typed("b_key", String), title=_typed("c_title", Text), title_custom=false(),
                created_at=now, updated_at=now, activity=ids.c.id, message_count=_typed("c_count", Integer),
                latest_app_id=_typed("b_app", String), stored_bytes=_typed("b_stored", Integer),
                owner=_typed("c_owner", String))
    catalog = step_upsert_from(select(*(step[c] for c in STEP_COLUMNS)).select_from(_cross(ids, moved))).cte("catalog")
    # the messages this step appended, for full-text search (search_index.py; PostgreSQL indexes the tsv column's lexemes, migration 0010)
    found = _unnest(("sidx", Integer), ("srole", String), ("stext", Text))
    # a message index may have a row already (the list once shrank, then grew again): the new text wins
    new_search = postgresql.insert(_search).from_select(["partition_key", "app_id", "idx", "role", "content"], select(
        _typed("b_key", String), _typed("b_app", String), found.c.sidx, found.c.srole, found.c.stext,
    ).select_from(_cross(moved, found)))
    new_search = new_search.on_conflict_do_update(
        index_elements=[_search.c.partition_key, _search.c.app_id, _search.c.idx],
        set_=dict(role=new_search.excluded.role, content=new_search.excluded.content)).cte("new_search")
    return select(snapshot.c.id).add_cte(new_values, new_chunks, catalog, new_search)


_FAST_SAVE = _fast_save()


def find_app(conn: Connection, partition_key: str, app_id: str, *, lock: bool = False) -> Any | None:
    """The branch row (id, last_sequence_id, created_at), locked for update on databases that can."""
    return conn.execute(_FIND_APP_LOCKED if lock else _FIND_APP, {"b_key": partition_key, "b_app": app_id}).first()


def find_branch_snapshot(conn: Connection, partition_key: str, app_id: str | None, sequence_id: int | None) -> Any | None:
    """The snapshot to load, joined with its branch row: `sequence_id` of `app_id`, where None means
    the branch's latest snapshot and the most recently written branch respectively."""
    newest = {"b_key": partition_key}
    if sequence_id is None:
        if app_id is None:
            return conn.execute(_NEWEST_BRANCH_LATEST, newest).first()
        return conn.execute(_BRANCH_LATEST, {**newest, "b_app": app_id}).first()
    if app_id is None:
        branch = conn.execute(_NEWEST_BRANCH_LATEST, newest).first()
        if branch is None:
            return None
        app_id = branch.app_id
    return conn.execute(_SNAPSHOT_AT, {**newest, "b_app": app_id, "b_seq": sequence_id}).first()


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



def fast_save(conn: Connection, expected: int, sequence_id: int, position: str, status: str, now: datetime,
              enc: EncodedSnapshot, step: dict[str, Any], search_rows: list[dict[str, Any]]) -> int | None:
    """`insert_snapshot` plus `record_step` in one statement (PostgreSQL), for a save without chunk merges
    on top of snapshot `expected`. `step` is `catalog.step_row` of the save; `search_rows` the messages it
    appended (search.rows_to_index). Returns the snapshot id,
    or None, having written nothing, when the branch is missing or has moved past `expected`."""
    chunks = enc.chunks
    params = {
        "b_key": step["partition_key"], "b_app": step["latest_app_id"], "b_expected": expected, "b_seq": sequence_id,
        "b_now": now, "b_position": position, "b_status": status, "b_manifest": enc.manifest.to_json(),
        "b_stored": step["stored_bytes"], "c_title": step["title"], "c_count": step["message_count"],
        "c_owner": step["owner"],
        "a_key": [k for k, _ in enc.values], "a_data": [d for _, d in enc.values],
        "a_ckey": [c.key for c in chunks], "a_gen": [c.generation for c in chunks], "a_idx": [c.start for c in chunks],
        "a_count": [c.count for c in chunks], "a_cdata": [c.data for c in chunks],
        "a_sidx": [r["i"] for r in search_rows], "a_srole": [r["r"] for r in search_rows],
        "a_stext": [r["c"] for r in search_rows]}
    return conn.execute(_FAST_SAVE, params).scalar()


def find_latest_snapshot(conn: Connection, app_ref: int) -> Any | None:
    return conn.execute(_SNAPSHOT_LATEST, {"b_ref": app_ref}).first()


def read_state(
    conn: Connection, branch: Branch, manifest: Manifest, cache: ListPrefixCache | None = None
) -> tuple[dict[str, Any], set[str]]:
    """The serialized state a manifest describes, and the keys that need Burr's serde walk.

    List items already in `cache` are not read again; what is read is added to it. A state with
    big values and one list to read (a chat's) is read in one statement.
    """
    known = {key: _cached(cache, branch, key, entry[0]) for key, entry in manifest.lists.items()}
    to_read = [key for key, entry in manifest.lists.items() if entry[1] > len(known[key].items)]
    values: dict[str, bytes] | None = None
    chunks: dict[str, list[tuple[int, int, bytes]]] = {}
    if manifest.values and len(to_read) == 1:
        values, chunks[to_read[0]] = _values_and_chunks(conn, branch, manifest, to_read[0], known[to_read[0]])

    def fetch_values(pointers: dict[str, int]) -> dict[str, bytes]:
        if values is not None:
            return values
        rows = conn.execute(_VALUES, {"b_ref": branch.row_id, "b_pointers": list(pointers.items())})
        return {key: data for key, data in rows}

    def read_list(key: str, generation: int, length: int, flags: int | None) -> tuple[list, bool]:
        prefix = known[key]
        if length <= len(prefix.items):
            return prefix.items[:length], prefix.needs_serde if flags is None else bool(flags & HAS_SERDE_MARKER)
        if key not in chunks:
            chunks[key] = [tuple(row) for row in conn.execute(_CHUNKS, _chunk_params(branch, key, manifest, prefix))]
        items, needs_serde, json_bytes = assemble_list(key, prefix.items, prefix.needs_serde, chunks[key], length, flags)
        if cache is not None:
            cache.put(branch, key, generation, items, needs_serde, prefix.size + json_bytes)
        return items, needs_serde

    return decode(manifest, fetch_values, read_list)


_NOTHING_KNOWN = CachedList([], False, 0)


def _cached(cache: ListPrefixCache | None, branch: Branch, key: str, generation: int) -> CachedList:
    return (cache.get(branch, key, generation) if cache is not None else None) or _NOTHING_KNOWN


def _chunk_params(branch: Branch, key: str, manifest: Manifest, prefix: CachedList) -> dict[str, Any]:
    generation, length = manifest.lists[key][:2]
    return {"b_ref": branch.row_id, "b_key": key, "b_gen": generation, "b_have": len(prefix.items), "b_len": length}


def _values_and_chunks(conn: Connection, branch: Branch, manifest: Manifest, key: str,
                       prefix: CachedList) -> tuple[dict[str, bytes], list[tuple[int, int, bytes]]]:
    params = {**_chunk_params(branch, key, manifest, prefix), "b_pointers": list(manifest.values.items())}
    values: dict[str, bytes] = {}
    chunks: list[tuple[int, int, bytes]] = []
    for kind, row_key, idx, count, data in conn.execute(_VALUES_AND_CHUNKS, params):
        if kind == 0:
            values[row_key] = data
        else:
            chunks.append((idx, count, data))
    chunks.sort(key=lambda chunk: chunk[0])
    return values, chunks
