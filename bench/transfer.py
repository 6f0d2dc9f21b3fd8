"""Export and import benchmark (issue 15): a conversation of T turns with B branches, exported as Burrow
JSON and imported again through ChatService, on SQLite and PostgreSQL: time (a plain pass) and peak
Python memory (tracemalloc, a second pass), and the search rows the import wrote against its messages.

The conversation is built through the persister in the chat graph's shape (3 saves a turn, bench.search
chat_turn); branches are ChatService.fork of a step of the main branch, then a few turns of their own.
`python -m bench.transfer [--turns 1000 --branches 20 --branch-turns 10]`.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
import tracemalloc
from pathlib import Path

from burr.core import State
from sqlalchemy import text

from bench.pg_server import ThrowawayPostgres
from bench.search import chat_turn
from bench.search_data import Corpus
from core.chat import ChatService
from core.llm import OfflineModel
from core.settings import Settings
from core.storage import SQLAlchemyPersister


def service_for(url: str) -> ChatService:
    return ChatService.from_settings(Settings(database_url=url, tracker_project=None), model=OfflineModel(0))


def build(service: ChatService, p: SQLAlchemyPersister, corpus: Corpus, turns: int, branches: int,
          branch_turns: int) -> int:
    """The conversation "big": returns how many distinct messages its branches hold."""
    texts = iter(corpus.texts)
    history: list = []
    p.save("big", "main", 0, "start", State({"chat_history": []}), "completed")
    for t in range(turns):
        history, _ = chat_turn(p, "big", 1 + 3 * t, history, next(texts), next(texts))
    unique = len(history)
    for b in range(branches):
        seq = 3 * (turns * (b + 1) // (branches + 1))  # after turn k: the ai_response step
        app_id = service.fork("big", "main", seq, f"branch-{b}")
        fork_history = p.load("big", app_id)["state"]["chat_history"]
        for t in range(branch_turns):
            fork_history, _ = chat_turn(p, "big", seq + 1 + 3 * t, list(fork_history), next(texts), next(texts),
                                        app_id)
        unique += 2 * branch_turns
    return unique


def timed(fn, memory: bool) -> tuple[float, float]:  # noqa: ANN001 - any callable
    """(seconds, peak MB of Python allocations) of fn(); memory only when asked (tracemalloc slows it)."""
    if memory:
        tracemalloc.start()
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / (1 << 20) if memory else float("nan")
    if memory:
        tracemalloc.stop()
    return seconds, peak


def run(url: str, name: str, args: argparse.Namespace, tmp: Path) -> dict:
    service, p = service_for(url), SQLAlchemyPersister.from_url(url)
    p.initialize()
    unique = build(service, p, Corpus(2 * args.turns + 2 * args.branches * args.branch_turns + 10), args.turns,
                   args.branches, args.branch_turns)
    out = tmp / f"{name}.json"
    result: dict = {"db": name}
    for memory in (False, True):
        def export() -> None:
            with open(out, "w", encoding="utf-8") as f:
                service.export_json("big", f)
        result["export" + ("_mem" if memory else "")] = timed(export, memory)
        imported: list = []
        result["import" + ("_mem" if memory else "")] = timed(lambda: imported.extend(service.import_file(out)), memory)
    with p.engine.connect() as conn:
        rows = conn.execute(text("SELECT count(*) FROM burrow_search_messages WHERE partition_key = :k"),
                            {"k": imported[0]}).scalar()
    result.update(size_mb=out.stat().st_size / (1 << 20), unique=unique, rows=rows)
    service.close()
    p.engine.dispose()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--turns", type=int, default=1000)
    ap.add_argument("--branches", type=int, default=20)
    ap.add_argument("--branch-turns", type=int, default=10)
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(run(f"sqlite:///{Path(tmp) / 'transfer.db'}", "SQLite", args, Path(tmp)))
        if not args.no_postgres:
            with ThrowawayPostgres() as pg:
                rows.append(run(pg.url, "PostgreSQL", args, Path(tmp)))
    print(f"{args.turns} turns, {args.branches} branches of {args.branch_turns} more turns each; "
          f"load average {os.getloadavg()[0]:.2f} at the end")
    print("| database | file | export | export peak memory | import | import peak memory | "
          "search rows of the import / distinct messages |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['db']} | {r['size_mb']:.1f} MB | {r['export'][0]:.2f} s | {r['export_mem'][1]:.1f} MB | "
              f"{r['import'][0]:.2f} s | {r['import_mem'][1]:.1f} MB | {r['rows']} / {r['unique']} |")


if __name__ == "__main__":
    main()
