"""Storage benchmark: Burrow's persister vs Burr's own SQLite and PostgreSQL persisters, one run.

    python -m bench.storage             # full run (~10 min on 2 cores): 100/500/1,000 turns, 10,000 conversations
    python -m bench.storage --quick     # a smoke run in well under a minute
    python -m bench.storage --pg-url postgresql+psycopg://user@host:5432/postgres  # use your server
    python -m bench.storage --no-postgres

By default a throwaway PostgreSQL server is started when its binaries are installed. With
`--pg-url` the benchmark creates (and drops) its own databases there, so the user needs CREATEDB.
Writes bench/results/storage.md (table + targets) and bench/results/storage.png (bytes vs turns).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

from bench.phases import measure_listing, measure_loads, run_conversation
from bench.pg_server import ThrowawayPostgres, find_bin_dir
from bench.report import Column, check_targets, like_for_like, plot, table
from bench.targets import BurrPostgres, BurrSQLite, OursPostgres, OursSQLite, Target

RESULTS = Path(__file__).resolve().parent / "results"
PAGE = 50


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.storage", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10/50/100 turns, 1,000 conversations, fewer repeats")
    parser.add_argument("--turns", help="checkpoints, comma-separated (default 100,500,1000)")
    parser.add_argument("--conversations", type=int, help="catalog size for the listing test (default 10000)")
    parser.add_argument("--repeat", type=int, help="rounds of timed loads and listings, 5 calls each (default 20)")
    pg = parser.add_mutually_exclusive_group()
    pg.add_argument("--pg-url", help="a PostgreSQL server to use (SQLAlchemy URL; needs CREATEDB)")
    pg.add_argument("--start-postgres", action="store_true", help="start a throwaway server (fail if impossible)")
    pg.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help="where storage.md and storage.png go")
    args = parser.parse_args(argv)
    default_turns = "10,50,100" if args.quick else "100,500,1000"
    args.checkpoints = sorted({int(t) for t in (args.turns or default_turns).split(",")})
    args.conversations = args.conversations or (1000 if args.quick else 10000)
    args.repeat = args.repeat or (5 if args.quick else 20)
    return args


METHOD = (
    "One conversation per persister through a real Burr `Application` (the chat graph, an instant fake model, "
    "~600-byte user and assistant messages from a fixed word list, 3 saves per turn), one persister after the "
    "other (Burrow's first), as a deployment runs one. Sizes are measured at each checkpoint of that conversation (SQLite: file size after VACUUM; "
    "PostgreSQL: `pg_total_relation_size` of the persister's tables after VACUUM FULL), as a multiple of the raw "
    "message text (UTF-8 bytes of the contents). Save times wrap each `persister.save` (wall time). Loads and "
    "listings are timed in {repeat} rounds over the persisters, 5 consecutive calls of one persister at a time. "
    "Loads are timed as the app makes them (Burrow's persister keeps the list items it has read, so a conversation "
    "reloaded every turn reads only new rows) and with that cache emptied before each call (the first load of a "
    "conversation in a process); Burr's persisters keep no cache, so both of their rows time the same call. "
    "The listing databases are separate, seeded with one short turn (3 saves) per conversation, with fsync off "
    "while seeding (Burr SQLite `synchronous=OFF`, PostgreSQL `synchronous_commit=off`; reads are unaffected). "
    "Burr lists one user's conversations as the app_ids of a partition key (`list_app_ids`, which has no limit), "
    "Burrow with `ConversationStore.list(limit=50)`. The PostgreSQL persisters share one server."
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


@contextlib.contextmanager
def postgres_server(args: argparse.Namespace):  # noqa: ANN201 - a context manager of str | None
    """Yields a server URL, or None (with the reason logged) when PostgreSQL is skipped."""
    if args.no_postgres:
        yield None
    elif args.pg_url:
        yield args.pg_url
    else:
        try:
            find_bin_dir()
        except RuntimeError as exc:
            if args.start_postgres:
                raise
            log(f"PostgreSQL skipped: {exc}")
            yield None
            return
        with ThrowawayPostgres() as server:
            log(f"started a throwaway PostgreSQL at {server.url}")
            yield server.url


def make_targets(work: Path, pg_url: str | None, tag: str, fast_writes: bool = False) -> list[Target]:
    targets: list[Target] = [OursSQLite(work / f"burrow-{tag}.db"), BurrSQLite(work / f"burr-{tag}.db", fast_writes)]
    if pg_url:
        targets += [OursPostgres(pg_url, f"ours_{tag}", fast_writes), BurrPostgres(pg_url, f"burr_{tag}", fast_writes)]
    return targets


def benchmark(args: argparse.Namespace, work: Path, pg_url: str | None) -> tuple[list[Column], dict[int, int]]:
    targets = make_targets(work, pg_url, "run")
    try:
        log(f"a conversation of {max(args.checkpoints):,} turns through each of {len(targets)} persisters")
        runs, raw_at = run_conversation(targets, args.checkpoints, log)
        log("loads")
        measure_loads(targets, runs, max(args.checkpoints), args.repeat)
    finally:
        for target in targets:
            target.close()
    listing_targets = make_targets(work, pg_url, "list", fast_writes=True)
    try:
        log(f"seeding {args.conversations:,} conversations per persister, then listing")
        listings = measure_listing(listing_targets, args.conversations, PAGE, args.repeat)
    finally:
        for target in listing_targets:
            target.close()
    columns = [Column(t.label_id, t.label, t.backend, t.ours, runs[t.label_id], listings.get(t.label_id)) for t in targets]
    return columns, raw_at


def environment(pg_url: str | None, seconds: float, load: tuple[float, float]) -> str:
    pg = "not run"
    if pg_url:
        from sqlalchemy import create_engine, text

        engine = create_engine(pg_url)
        with engine.connect() as conn:
            pg = conn.execute(text("SHOW server_version")).scalar_one()
        engine.dispose()
    return (f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC · {os.cpu_count()} CPUs · Python {platform.python_version()} · "
            f"SQLite {sqlite3.sqlite_version} · PostgreSQL {pg} · apache-burr {version('apache-burr')} · "
            f"SQLAlchemy {version('sqlalchemy')} · total {seconds / 60:.1f} min · "
            f"load average {load[0]:.1f} at start, {load[1]:.1f} at end")


def render(args: argparse.Namespace, columns: list[Column], raw_at: dict[int, int], env: str, argv: list[str]) -> str:
    early = args.checkpoints[0]
    targets = check_targets(columns, raw_at, early)
    met = "\n".join(f"- {'PASS' if ok else 'FAIL'} — {name}: {numbers}" for name, ok, numbers in targets)
    same = "\n".join(like_for_like(columns, raw_at)) or "- (only one backend ran)"
    if max(raw_at) < 1000 or args.conversations < 10000:
        met = ("A reduced run: the targets are set for 1,000 turns and 10,000 conversations, where the "
               "quadratic costs show; at this size fixed overheads dominate.\n\n" + met)
    command = " ".join(["python -m bench.storage", *argv])
    return "\n".join([
        "# Storage benchmark", "", f"`{command}` — {env}", "",
        table(columns, raw_at, early, PAGE, args.conversations), "",
        "## Targets of issue 4 (ratios within this run; saves and loads are compared with Burr's SQLitePersister, "
        "as the issue states, listing with Burr's persister on the same database)", "", met, "",
        "Like for like (Burrow vs Burr on the same database):", "", same, "",
        "## How it was measured", "", METHOD.format(repeat=args.repeat), "",
        "![stored bytes vs turns](storage.png)", ""])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    started, load_start = time.perf_counter(), os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="burrow-bench-"))
    try:
        with postgres_server(args) as pg_url:
            columns, raw_at = benchmark(args, work, pg_url)
            env = environment(pg_url, time.perf_counter() - started, (load_start, os.getloadavg()[0]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    report = render(args, columns, raw_at, env, argv)
    (args.out_dir / "storage.md").write_text(report)
    plot(columns, raw_at, args.out_dir / "storage.png")
    print(report)
    log(f"wrote {args.out_dir / 'storage.md'} and {args.out_dir / 'storage.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
