"""Search benchmark (issue 15): query latency over C conversations x M messages on SQLite and PostgreSQL,
and what indexing adds to a save, measured in the same run: the time spent in search.index_messages
(wrapped with a timer) against the whole save. `python -m bench.search [--conversations 1000 --messages 50]`.
"""
from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from burr.core import State

from bench.pg_server import ThrowawayPostgres
from core.storage import SearchStore, SQLAlchemyPersister
from core.storage import persister as persister_module

WORDS = ("river otter capybara budget quarterly plan trip lisbon python rust database index search query "
         "snapshot branch model reply stream token latency cache kernel garden recipe tomato music").split()
QUERIES = ["otter", "budget plan", "lisb", "quarterly budget review", "tomato recipe", "zzzz", '"(((', "snapshot bra"]


def message(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 90)))


def seed(p: SQLAlchemyPersister, conversations: int, messages: int) -> list[float]:
    """Saves every message as one step (the chat appends one per step); returns each save's time."""
    rng, saves = random.Random(7), []
    for c in range(conversations):
        history: list[dict] = []
        for seq in range(messages):
            history = [*history, {"role": "user" if seq % 2 == 0 else "assistant", "content": message(rng)}]
            start = time.perf_counter()
            p.save(f"c{c}", "main", seq, "human_input", State({"chat_history": history}), "completed")
            saves.append(time.perf_counter() - start)
    return saves


def timed_index(timer: list[float]):  # noqa: ANN201 - the wrapped function
    original = persister_module.index_messages

    def wrapped(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        start = time.perf_counter()
        original(*args, **kwargs)
        timer.append(time.perf_counter() - start)
    return original, wrapped


def run(url: str, name: str, conversations: int, messages: int, rounds: int) -> dict:
    p = SQLAlchemyPersister.from_url(url)
    p.initialize()
    timer: list[float] = []
    original, wrapped = timed_index(timer)
    persister_module.index_messages = wrapped
    try:
        saves = seed(p, conversations, messages)
    finally:
        persister_module.index_messages = original
    store, latencies = SearchStore(p), []
    for _ in range(rounds):
        for q in QUERIES:
            start = time.perf_counter()
            store.search("local", q, 20)
            latencies.append(time.perf_counter() - start)
    latencies.sort()
    p.engine.dispose()
    return {"db": name, "save_ms": statistics.median(saves) * 1e3, "index_ms": statistics.median(timer) * 1e3,
            "ratio": statistics.median(timer) / statistics.median(saves),
            "q_p50": latencies[len(latencies) // 2] * 1e3, "q_p99": latencies[int(len(latencies) * 0.99)] * 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--conversations", type=int, default=1000)
    ap.add_argument("--messages", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(run(f"sqlite:///{Path(tmp) / 'search.db'}", "SQLite", args.conversations, args.messages, args.rounds))
    if not args.no_postgres:
        with ThrowawayPostgres() as pg:
            rows.append(run(pg.url, "PostgreSQL", args.conversations, args.messages, args.rounds))
    print(f"{args.conversations} conversations x {args.messages} messages, {len(QUERIES)} queries x {args.rounds}")
    print("| database | save median | of it: indexing median | indexing / save | query p50 | query p99 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['db']} | {r['save_ms']:.2f} ms | {r['index_ms']:.2f} ms | {r['ratio']:.2f} | "
              f"{r['q_p50']:.2f} ms | {r['q_p99']:.2f} ms |")


if __name__ == "__main__":
    main()
