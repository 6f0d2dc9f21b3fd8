"""Schema migrations (Alembic revisions) on SQLite and PostgreSQL: a blank database, every upgrade path
from a database as each release built and wrote it, stamping, re-runs, concurrent starts, and the
refusal of a database written by a newer Burrow.

The legacy databases come from tests/persistence/test_migrations_legacy.py, which writes each
release's format itself (not through the revisions, and not through today's code).
"""
from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from core.app import build_application
from core.errors import SchemaVersionError, SnapshotConflictError
from core.storage import ConversationStore, SQLAlchemyPersister
from core.storage.engine import create_burrow_engine
from core.storage.migrations import HEAD, LEGACY_TABLE, VERSION_TABLE, revisions, stamp_legacy, upgrade
from core.storage.schema import Base
from tests.persistence.test_migrations_legacy import Saved, build_release_database, create_release_schema
from tests.persistence.test_storage_format import ScriptedModel, exact, run_turns, stored_payload

REVISIONS = list(revisions())  # what an upgrade runs: everything after where the database is
FUTURE = f"{int(HEAD) + 1:04d}"
RAN_FROM = {None: REVISIONS, **{v: REVISIONS[REVISIONS.index(f"{v:04d}") + 1:] for v in (1, 2, 3)}}


@pytest.fixture
def engine(db_url: str):
    engine = create_burrow_engine(db_url)
    yield engine
    engine.dispose()


def revision_of(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())


def schema_differences(engine: Engine) -> list[Any]:
    """What Alembic's autogenerate finds between the database and core/storage/schema.py (types included)."""
    skip = {VERSION_TABLE, LEGACY_TABLE}
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={
            "compare_type": True, "include_name": lambda name, kind, _: _compared(name, kind, skip)})
        return compare_metadata(context, Base.metadata)


def _compared(name: str | None, kind: str, skip: set[str]) -> bool:
    """Tables and indexes the models describe: not the version tables, nor search's FTS5 table (with its
    shadow tables), nor PostgreSQL's `tsv` column and its GIN indexes, which core/storage/search.py describes."""
    if kind == "table":
        return name not in skip and not (name or "").startswith("burrow_search_fts")
    return name not in ("ix_burrow_search_messages_tsv", "ix_burrow_search_messages_terms", "tsv")


def columns_of(engine: Engine) -> dict[str, list[str]]:
    with engine.connect() as conn:
        return {name: [c["name"] for c in inspect(conn).get_columns(name)] for name in inspect(conn).get_table_names()}


def everything(engine: Engine, only: dict[str, list[str]] | None = None) -> dict[str, list]:
    """Every row of every table (or of the tables and columns in `only`), ids included: to see that
    something did not change."""
    found = only or columns_of(engine)
    with engine.connect() as conn:
        return {name: sorted(map(repr, conn.execute(text(f"SELECT {', '.join(columns)} FROM {name}")).all()))
                for name, columns in sorted(found.items())}


def listing(engine: Engine) -> list[tuple]:
    """The catalog as every release's sidebar ordered it."""
    query = text("SELECT partition_key, title, message_count, latest_app_id FROM burrow_conversations "
                 "ORDER BY activity DESC")
    with engine.connect() as conn:
        return [(key, title or "Untitled conversation", count, app) for key, title, count, app in conn.execute(query)]


def lz4_as_expected(engine: Engine) -> bool:
    """On PostgreSQL servers built with lz4 the chunk column asks for it; elsewhere there is nothing to ask."""
    if engine.dialect.name != "postgresql":
        return True
    with engine.connect() as conn:
        available = conn.execute(text(
            "SELECT coalesce(bool_or('lz4' = ANY(enumvals)), false) FROM pg_settings "
            "WHERE name = 'default_toast_compression'")).scalar_one()
        method = conn.execute(text("SELECT attcompression::text FROM pg_attribute WHERE attname = 'data' "
                                   "AND attrelid = 'burrow_list_items'::regclass")).scalar_one()
    return method == ("l" if available else "")


def assert_every_step_loads_exactly(db_url: str, saved: Saved) -> None:
    reader = SQLAlchemyPersister.from_url(db_url, list_cache_bytes=0)  # every load reads the database
    try:
        for (key, app_id, seq), (state_json, position, status) in saved.items():
            loaded = reader.load(key, app_id, seq)
            assert (loaded["position"], loaded["status"], loaded["sequence_id"]) == (position, status, seq)
            assert exact(loaded["state"].serialize()) == exact(json.loads(state_json)), (key, app_id, seq)
    finally:
        reader.engine.dispose()


def test_a_blank_database_gets_head(engine):
    persister = SQLAlchemyPersister(engine)
    assert not persister.is_initialized()
    assert upgrade(engine) == RAN_FROM[None]
    assert persister.is_initialized() and revision_of(engine) == [HEAD]
    assert schema_differences(engine) == [] and lz4_as_expected(engine)
    assert LEGACY_TABLE not in inspect(engine).get_table_names()  # nothing of the old bookkeeping in a new database


@pytest.mark.parametrize("version", [1, 2, 3])
def test_every_released_database_upgrades_in_place_and_the_chat_goes_on(engine, db_url, version):
    saved = build_release_database(engine, version)
    before = listing(engine)
    assert [row[0] for row in before][:2] == ["numbers", "renamed"] and len(saved) == 71 * 3 + 4 + 6 + 3 + 5  # the fork starts mid-turn
    persister = SQLAlchemyPersister(engine)
    assert not persister.is_initialized()

    assert upgrade(engine) == RAN_FROM[version]
    assert persister.is_initialized() and revision_of(engine) == [HEAD]
    assert schema_differences(engine) == [] and lz4_as_expected(engine)
    assert_every_step_loads_exactly(db_url, saved)
    store = ConversationStore(persister)
    assert [(c.partition_key, c.title, c.message_count, c.latest_app_id) for c in store.list()] == before
    assert persister.list_app_ids("long") == ["main", "fork"]
    assert all(store.get(key).stored_bytes == stored_payload(persister, key) > 0 for key, *_ in before)
    assert [s.status for s in store.snapshots("failed", "f")][-1] == "failed"

    continue_the_chat(persister, saved)
    assert_every_step_loads_exactly(db_url, saved)  # old steps too, after seals rewrote their chunks
    assert all(store.get(key).stored_bytes == stored_payload(persister, key) for key, *_ in before)
    with engine.connect() as conn:
        codecs = {bytes(c) for c in conn.execute(text("SELECT DISTINCT substr(data, 1, 1) FROM burrow_list_items"))
                  .scalars()}
    assert codecs == {b"j", b"4"}  # the upgraded chunks stay plain JSON, new ones are compressed


def continue_the_chat(persister: SQLAlchemyPersister, saved: Saved) -> None:
    """Saves more steps on every kind of upgraded branch, records them in `saved`, checks continuity."""
    recording = _Recording(persister, saved)
    for app_id, turns in (("main", 35), ("fork", 1)):  # 35 turns: main's history is sealed again
        last = persister.load("long", app_id)["sequence_id"]
        history = persister.load("long", app_id)["state"]["chat_history"]
        run_turns(build_application("long", persister=recording, llm=ScriptedModel(), app_id=app_id), 300, turns)
        after = persister.load("long", app_id)
        assert after["sequence_id"] == last + 3 * turns and after["state"]["chat_history"][:len(history)] == history
        with pytest.raises(SnapshotConflictError):
            persister.save("long", app_id, last + 1, "human_input", after["state"], "completed")
    state = persister.load("numbers", "n")["state"]
    recording.save("numbers", "n", 5, "human_input", state.update(scores=[*state["scores"], 6]), "completed")
    assert ConversationStore(persister).list()[0].partition_key == "numbers"  # the newest activity is on top


class _Recording(SQLAlchemyPersister):
    """Today's persister, recording each save the way the legacy writers did."""

    def __init__(self, persister: SQLAlchemyPersister, saved: Saved):
        super().__init__(persister.engine)
        self.saved = saved

    def save(self, partition_key, app_id, sequence_id, position, state, status, **kwargs):  # noqa: ANN001
        super().save(partition_key, app_id, sequence_id, position, state, status, **kwargs)
        self.saved[(partition_key, app_id, sequence_id)] = (json.dumps(state.serialize()), position, status)


def test_a_v3_database_is_stamped_not_rebuilt(engine, db_url):
    saved = build_release_database(engine, 3, turns=25)
    released = columns_of(engine)
    rows = everything(engine)
    assert stamp_legacy(engine) == "0003"
    after = everything(engine)
    assert after.pop(VERSION_TABLE) == [repr(("0003",))]
    assert after == rows  # every row, id and byte as the v3 release left it; burrow_migrations included
    assert upgrade(engine) == RAN_FROM[3]  # and later revisions (if any) keep them too
    assert everything(engine, released) == rows
    assert_every_step_loads_exactly(db_url, saved)


def test_upgrading_twice_is_a_no_op(engine):
    build_release_database(engine, 1, turns=25)
    persister = SQLAlchemyPersister(engine)
    persister.initialize()
    rows = everything(engine)
    assert upgrade(engine) == []
    persister.initialize()
    SQLAlchemyPersister(engine).initialize()
    assert everything(engine) == rows


@pytest.mark.parametrize("version", [None, 1])
def test_servers_starting_at_once_upgrade_once(db_url, version):
    """Four processes' worth of engines start on the same database at the same moment."""
    if version is not None:
        setup = create_burrow_engine(db_url)
        saved = build_release_database(setup, version, turns=30)
        setup.dispose()
    engines = [create_burrow_engine(db_url) for _ in range(4)]
    start, results, errors = threading.Barrier(len(engines)), [], []

    def boot(engine: Engine) -> None:
        start.wait()
        try:
            results.append(upgrade(engine))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=boot, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for engine in engines:
        engine.dispose()
    assert errors == [] and sorted(results) == [[]] * 3 + [RAN_FROM[version]]
    if version is not None:
        assert_every_step_loads_exactly(db_url, saved)


def newer_alembic_database(engine: Engine) -> None:
    """A database a future Burrow wrote: the revision after this release's head, and a table this
    release never heard of."""
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '{FUTURE}'"))
        conn.execute(text("CREATE TABLE burrow_future (id INTEGER PRIMARY KEY)"))


def newer_legacy_database(engine: Engine) -> None:
    """A pre-Alembic database whose burrow_migrations says version 4 (this release knows 1..3)."""
    create_release_schema(engine, 3)
    with engine.begin() as conn:
        conn.execute(text(f"INSERT INTO {LEGACY_TABLE} (version, name, applied_at) "
                          "VALUES (4, 'from the future', CURRENT_TIMESTAMP)"))


@pytest.mark.parametrize("make, found", [(newer_alembic_database, FUTURE),
                                         (newer_legacy_database, "version 4 in burrow_migrations")],
                         ids=["alembic", "legacy"])
def test_a_database_from_a_newer_burrow_is_refused_and_left_untouched(engine, make, found):
    make(engine)
    rows = everything(engine)
    persister = SQLAlchemyPersister(engine)
    message = rf"newer Burrow \(schema {found}\); this release knows schema up to {HEAD}\. Upgrade Burrow"
    with pytest.raises(SchemaVersionError, match=message):
        persister.initialize()
    with pytest.raises(SchemaVersionError, match=message):
        persister.is_initialized()
    with pytest.raises(SchemaVersionError, match=message):
        upgrade(engine)
    assert everything(engine) == rows  # no table, no row: not even the version table of a legacy one
