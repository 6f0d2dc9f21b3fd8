"""The upgrade as SQL for review (`python -m core.storage.migrations sql`, Alembic's offline mode): it
needs no server, and the script it prints, run by hand, does what the online upgrade does.
"""
from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine

from core.app import build_application
from core.storage import ConversationStore, SQLAlchemyPersister
from core.storage.engine import create_burrow_engine
from core.storage.migrations import HEAD, print_sql, stamp_legacy, upgrade
from tests.persistence.test_migrations import (RAN_FROM, assert_every_step_loads_exactly, everything,
                                               lz4_as_expected, revision_of, schema_differences)
from tests.persistence.test_migrations_legacy import build_release_database
from tests.persistence.test_storage_format import ScriptedModel, run_turns, stored_payload

ROOT = Path(__file__).resolve().parents[2]
NO_SERVER = "postgresql+psycopg://nobody:secret@127.0.0.1:9/nothing"  # port 9: nothing listens there


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core.storage.migrations", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def script_for(url: str, start: str | None = None) -> str:
    out = io.StringIO()
    print_sql(url, start, output=out)
    return out.getvalue()


def run_script(engine: Engine, script: str) -> None:
    """Runs a printed script the way a person would (psql, sqlite3): statement after statement."""
    raw = engine.raw_connection()
    driver = raw.driver_connection
    try:
        if engine.dialect.name == "sqlite":
            driver.executescript(script)
        else:
            driver.autocommit = True
            driver.execute(script)
    except Exception:
        driver.execute("ROLLBACK")  # as psql with ON_ERROR_STOP leaves it: nothing of the script kept
        raise
    finally:
        raw.close()


@pytest.fixture
def engine(db_url: str):
    engine = create_burrow_engine(db_url)
    yield engine
    engine.dispose()


def test_the_sql_command_prints_the_postgresql_upgrade_without_connecting():
    done = cli("sql", "--url", NO_SERVER)
    assert done.returncode == 0, done.stderr
    script = done.stdout
    assert script.lstrip().startswith("BEGIN;") and script.rstrip().endswith("COMMIT;")  # one transaction
    for expected in ("CREATE TABLE burrow_apps", "BIGSERIAL", "TYPE bytea USING convert_to('j' || data, 'UTF8')",
                     "SET COMPRESSION lz4", "converting version-1 snapshots into delta rows needs Python",
                     "SET version_num='0003' WHERE burrow_alembic_version.version_num = '0002'"):
        assert expected in script, expected
    assert "secret" not in script

    later = cli("sql", "--from", "0002", "--url", NO_SERVER)
    assert later.returncode == 0 and "TYPE bytea" in later.stdout and "CREATE TABLE burrow_apps" not in later.stdout
    unknown = cli("sql", "--from", "0999", "--url", NO_SERVER)
    assert unknown.returncode == 2 and "unknown schema revision '0999'" in unknown.stderr


def test_the_current_command_reads_a_database(tmp_path):
    url = f"sqlite:///{tmp_path}/burrow.db"
    assert cli("current", "--url", url).stdout.strip() == "blank (no Burrow tables yet)"
    assert cli("upgrade", "--url", url).stdout.strip() == f"ran {', '.join(RAN_FROM[None])}; now at {HEAD}"
    assert cli("current", "--url", url).stdout.strip() == f"{HEAD} (head)"


def test_the_printed_script_builds_a_working_database(engine, db_url):
    run_script(engine, script_for(db_url))
    assert revision_of(engine) == [HEAD] and schema_differences(engine) == [] and lz4_as_expected(engine)
    persister = SQLAlchemyPersister(engine)
    assert persister.is_initialized() and upgrade(engine) == []
    run_turns(build_application("chat", persister=persister, llm=ScriptedModel(), app_id="main"), 1, 3)
    assert len(persister.load("chat", "main")["state"]["chat_history"]) == 6


def test_a_stamped_v2_database_upgrades_through_the_printed_script(engine, db_url):
    """The way a team that reviews its SQL upgrades: stamp, print from there, run it."""
    saved = build_release_database(engine, 2, turns=35)
    assert stamp_legacy(engine) == "0002" and revision_of(engine) == ["0002"]
    run_script(engine, script_for(db_url, "0002"))
    assert revision_of(engine) == [HEAD] and schema_differences(engine) == []
    assert_every_step_loads_exactly(db_url, saved)
    persister = SQLAlchemyPersister(engine)
    store = ConversationStore(persister)
    assert all(c.stored_bytes == stored_payload(persister, c.partition_key) for c in store.list())


def test_the_printed_script_stops_before_dropping_v1_snapshots(engine, db_url):
    saved = build_release_database(engine, 1, turns=3)
    assert stamp_legacy(engine) == "0001"
    rows = everything(engine)
    with pytest.raises(Exception, match="burrow_v1_snapshots_need_the_online_upgrade"):
        run_script(engine, script_for(db_url, "0001"))
    assert everything(engine) == rows  # the v1 snapshots are still there, nothing half-done
    assert upgrade(engine) == RAN_FROM[1]  # and the online upgrade converts them
    assert_every_step_loads_exactly(db_url, saved)
