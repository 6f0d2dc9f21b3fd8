"""Search benchmark (issue 15) on SQLite and PostgreSQL: query latency per kind of query over C
conversations x M messages, the index's size against the raw message text, and what indexing adds to
a save at turn T, against a baseline with indexing turned off in the same process, turn by turn.

`python -m bench.search [--conversations 10000 --messages 100 --turn 1000]` (bench/search_data.py
makes the data; bench/transfer.py measures export and import).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from burr.core import State
from sqlalchemy import text

from bench.pg_server import ThrowawayPostgres
from bench.search_data import Corpus, index_size, queries, seed
from core.storage import SearchStore, SQLAlchemyPersister
from core.storage import persister as persister_module


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1e3


SCOPES = {"everyone's (no sign-in)": None, "one user's (sign-in)": "local"}  # the data is all "local"'s


def time_queries(p: SQLAlchemyPersister, kinds: dict[str, list[str]], rounds: int,
                 owner: str | None = None) -> dict[str, dict]:
    """Each kind's queries `rounds` times (after one untimed round), as the service searches for `owner`
    (None: BURROW_AUTH=none, every conversation): p50 and p99 in ms, hits returned."""
    store = SearchStore(p)
    for qs in kinds.values():
        for q in qs:
            store.search(owner, q, 20)
    out = {}
    for kind, qs in kinds.items():
        samples, hits = [], []
        for _ in range(rounds):
            for q in qs:
                start = time.perf_counter()
                hits.append(len(store.search(owner, q, 20)))
                samples.append(time.perf_counter() - start)
        out[kind] = {"p50": percentile(samples, 0.5), "p99": percentile(samples, 0.99), "n": len(samples),
                     "hits": statistics.mean(hits)}
    return out


class NoIndexing:
    """Turns the index off for the saves inside `with` (the baseline): no search rows are written."""

    def __enter__(self) -> None:
        self.saved = persister_module.index_step, persister_module.rows_to_index
        persister_module.index_step = lambda *args, **kwargs: None
        persister_module.rows_to_index = lambda history, start: []

    def __exit__(self, *exc: object) -> None:
        persister_module.index_step, persister_module.rows_to_index = self.saved


def chat_turn(p: SQLAlchemyPersister, key: str, seq: int, history: list, user: str, reply: str,
              app_id: str = "main") -> tuple[list, list]:
    """One turn as the chat graph saves it: the user's message, the safety check, the reply (3 saves)."""
    times = []
    history = [*history, {"role": "user", "content": user}]
    for position, state in (("human_input", {"chat_history": history, "prompt": user}),
                            ("safety_check", {"chat_history": history, "prompt": user, "safe": True}),
                            ("ai_response", {"chat_history": [*history, {"role": "assistant", "content": reply}],
                                             "prompt": user, "safe": True, "response": reply})):
        start = time.perf_counter()
        p.save(key, app_id, seq, position, State(state), "completed")
        times.append(time.perf_counter() - start)
        seq += 1
    return state["chat_history"], times


def save_cost(p: SQLAlchemyPersister, corpus: Corpus, turn: int, measured: int) -> dict:
    """Two conversations grown to `turn` turns, then `measured` more turns each, alternating: one
    indexed, one not (same messages). Medians per save in ms, and of the saves that add a message."""
    texts = iter(corpus.texts)
    start_history = [{"role": "user" if i % 2 == 0 else "assistant", "content": next(texts)} for i in range(2 * turn)]
    runs = {"indexed": [], "baseline": []}
    histories = {}
    for name in runs:
        with NoIndexing() if name == "baseline" else _nothing():
            p.save(f"turns-{name}", "main", 0, "human_input", State({"chat_history": start_history}), "completed")
        histories[name] = start_history
    for t in range(measured):
        user, reply = next(texts), next(texts)
        for name in (("indexed", "baseline") if t % 2 == 0 else ("baseline", "indexed")):
            with NoIndexing() if name == "baseline" else _nothing():
                histories[name], times = chat_turn(p, f"turns-{name}", 1 + 3 * t, histories[name], user, reply)
            runs[name].append(times)
    med = {n: statistics.median(x for ts in r for x in ts) * 1e3 for n, r in runs.items()}
    adding = {n: statistics.median(x for ts in r for x in (ts[0], ts[2])) * 1e3 for n, r in runs.items()}
    return {"all": med, "adding": adding}


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def run(url: str, name: str, corpus: Corpus, args: argparse.Namespace) -> dict:
    p = SQLAlchemyPersister.from_url(url)
    p.initialize()
    print(f"{name}: saving {args.conversations} x {args.messages} messages", flush=True)
    seconds = seed(p, corpus, args.conversations, args.messages)
    if p.engine.dialect.name == "postgresql":
        with p.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    size = index_size(p)
    cost = save_cost(p, corpus, args.turn, args.turns_measured)
    print(f"{name}: timing queries (load {os.getloadavg()[0]:.2f})", flush=True)
    load_before = os.getloadavg()[0]
    kinds = queries(corpus, args.queries)
    timed = {scope: time_queries(p, kinds, args.rounds, owner) for scope, owner in SCOPES.items()}
    p.engine.dispose()
    return {"db": name, "seed_s": seconds, "size": size, "cost": cost, "queries": timed,
            "load": (load_before, os.getloadavg()[0])}


def report(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [f"{args.conversations} conversations x {args.messages} messages; {args.queries} queries per kind x "
             f"{args.rounds} rounds; save cost at turn {args.turn} over {args.turns_measured} turns", "",
             "| database | searching | query kind | p50 | p99 | hits (mean) |", "|---|---|---|---|---|---|"]
    for r in rows:
        for scope, timed in r["queries"].items():
            for kind, q in timed.items():
                lines.append(f"| {r['db']} | {scope} | {kind} | {q['p50']:.1f} ms | {q['p99']:.1f} ms | "
                             f"{q['hits']:.1f} |")
    lines += ["", "| database | raw text | rows (text + keys) | full-text index | search total / raw text | "
              "index only / raw text | dataset saved in |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        s, mb = r["size"], 1 << 20
        lines.append(f"| {r['db']} | {s['raw'] / mb:.0f} MB | {s['rows'] / mb:.0f} MB | {s['fts'] / mb:.0f} MB | "
                     f"{(s['rows'] + s['fts']) / s['raw']:.2f}x | {s['fts'] / s['raw']:.2f}x | {r['seed_s']:.0f} s |")
    lines += ["", "| database | save median, indexed | baseline (no index) | difference | ratio | "
              "saves adding a message: indexed | baseline | difference |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        a, b = r["cost"]["all"], r["cost"]["adding"]
        lines.append(f"| {r['db']} | {a['indexed']:.3f} ms | {a['baseline']:.3f} ms | "
                     f"{a['indexed'] - a['baseline']:+.3f} ms | {a['indexed'] / a['baseline']:.2f} | "
                     f"{b['indexed']:.3f} ms | {b['baseline']:.3f} ms | {b['indexed'] - b['baseline']:+.3f} ms |")
    lines += [""] + [f"{r['db']}: load average {r['load'][0]:.2f} before the queries, {r['load'][1]:.2f} after"
                     for r in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--conversations", type=int, default=10_000)
    ap.add_argument("--messages", type=int, default=100)
    ap.add_argument("--turn", type=int, default=1000)
    ap.add_argument("--turns-measured", type=int, default=100)
    ap.add_argument("--queries", type=int, default=20, help="distinct queries per kind")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--no-sqlite", action="store_true")
    args = ap.parse_args()
    corpus = Corpus(args.conversations * args.messages + 2 * args.turn + 2 * args.turns_measured + 2)
    rows = []
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(run(f"sqlite:///{Path(tmp) / 'search.db'}", "SQLite", corpus, args))
    if not args.no_postgres:
        with ThrowawayPostgres() as pg:
            rows.append(run(pg.url, "PostgreSQL", corpus, args))
    print(report(rows, args))


if __name__ == "__main__":
    main()
