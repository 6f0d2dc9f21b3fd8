"""`python -m core.storage.migrations`: the schema from a shell, for the people who run the database.

    sql [--from REV] [--to REV] [--url URL]   print an upgrade's SQL for review (connects to nothing)
    current [--url URL]                       the database's schema revision
    stamp [--url URL]                         record a pre-Alembic database's revision, change nothing else
    upgrade [--url URL]                       what every Burrow start does: bring it to head
    revision -m MESSAGE                       add versions/NNNN_message.py (from a source checkout)

URL defaults to BURROW_DATABASE_URL, else Burrow's default SQLite file (`sql`: else PostgreSQL).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TypeVar

from alembic import command

from core.errors import StorageError
from core.storage.engine import Database
from core.storage.migrations import HEAD, alembic_config, print_sql, schema_status, stamp_legacy, upgrade

T = TypeVar("T")


def _database_url(given: str | None) -> str:
    if given:
        return given
    from core.settings import default_database_url

    return os.environ.get("BURROW_DATABASE_URL") or default_database_url()


def _on_database(url: str, work: Callable[[Database], T]) -> T:
    """Runs `work` on the database at `url`; driver errors become StorageError with a readable message."""
    from core.storage.engine import create_burrow_engine

    database = Database(create_burrow_engine(url))
    try:
        return work(database)
    finally:
        database.dispose()


def _current(url: str) -> str:
    status = _on_database(url, lambda db: db.read(schema_status))
    if status.revision is None:
        return "blank (no Burrow tables yet)"
    if not status.stamped:
        return f"{status.revision} (recorded in burrow_migrations; stamped and upgraded to {HEAD} at the next start)"
    return status.revision + (" (head)" if status.revision == HEAD else f" (upgraded to {HEAD} at the next start)")


def _upgrade(url: str) -> str:
    ran = _on_database(url, lambda db: db.guard(lambda: upgrade(db.engine)))
    return f"ran {', '.join(ran)}; now at {HEAD}" if ran else f"already at {HEAD}"


def _stamp(url: str) -> str:
    revision = _on_database(url, lambda db: db.guard(lambda: stamp_legacy(db.engine)))
    return f"at {revision}; print the rest with: sql --from {revision}" if revision else "blank database: nothing to stamp"


def _new_revision(message: str) -> str:
    rev_id = f"{int(HEAD) + 1:04d}"
    script = command.revision(alembic_config(), message=message, rev_id=rev_id)
    return f"wrote {script.path}" if script is not None else "no revision written"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core.storage.migrations", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sql = sub.add_parser("sql", help="print the SQL of an upgrade (Alembic offline mode)")
    sql.add_argument("--from", dest="start", metavar="REV", help="the revision the database is at (default: blank)")
    sql.add_argument("--to", dest="end", metavar="REV", default="head", help="where to stop (default: head)")
    sql.add_argument("--url", help="only its dialect is used (default: BURROW_DATABASE_URL, else postgresql://)")
    for name, text in (("current", "show the database's revision"), ("upgrade", "upgrade the database to head"),
                       ("stamp", "record a pre-Alembic database's revision (before printing the rest as SQL)")):
        sub.add_parser(name, help=text).add_argument("--url", help="default: BURROW_DATABASE_URL")
    sub.add_parser("revision", help="add the next numbered revision").add_argument("-m", "--message", required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "sql":
            print_sql(args.url or os.environ.get("BURROW_DATABASE_URL") or "postgresql://", args.start, args.end)
        elif args.command == "current":
            print(_current(_database_url(args.url)))
        elif args.command == "upgrade":
            print(_upgrade(_database_url(args.url)))
        elif args.command == "stamp":
            print(_stamp(_database_url(args.url)))
        else:
            print(_new_revision(args.message))
    except StorageError as exc:  # SchemaVersionError included: the message says what to do
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
