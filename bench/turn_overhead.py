"""What a chat turn costs Burrow itself: Burr steps + persistence (+ tracker), with a model that costs ~nothing.

Each turn is `ChatService.send(...)` (which starts a run on one of the service's worker threads
and returns it at once) followed to the end of the run (human_input, safety_check, ai_response:
three persisted Burr steps, plus the lease on the branch) with `OfflineModel(word_delay=0)`, so
the time measured is Burrow's overhead, not a model's. Conversations grow to `--turns-per-conversation` turns, so later turns
carry a longer history, as in real use. Runs on SQLite (a temporary file) and, when asked, on
PostgreSQL, each with the Burr local tracker on (writing to a temporary folder) and off. The
configurations take turns in rounds of `--round-turns`, so load from anything else on the
machine falls on all of them alike.

    python -m bench.turn_overhead                          # SQLite only
    python -m bench.turn_overhead --pg-url postgresql+psycopg://user@127.0.0.1:5432/bench
    python -m bench.turn_overhead --start-postgres         # a throwaway server (bench/pg_server.py)

With --pg-url the tables are created in that database (it should be a scratch database); with
--start-postgres a temporary cluster is started on a free loopback port and deleted afterwards.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.pg_server import postgres_url
from core.chat import ChatService
from core.llm import OfflineModel
from core.settings import Settings


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def model_only_ms(turns: int) -> float:
    """The median cost of the offline model alone (what the turn timings include besides Burrow)."""
    model = OfflineModel(word_delay=0)
    messages = [{"role": "user", "content": "How does a burrow stay dry?"}]
    samples = []
    for _ in range(turns):
        start = time.perf_counter()
        "".join(model.stream(messages))
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


class Config:
    """One backend x tracker setting: its own service, its current conversation, its samples."""

    def __init__(self, backend: str, database_url: str, tracking: bool, workdir: Path):
        self.backend, self.tracker = backend, "on" if tracking else "off"
        settings = Settings(database_url=database_url, tracker_project="bench" if tracking else None,
                            tracker_dir=str(workdir / f"tracker-{backend}-{self.tracker}"))
        self.service = ChatService.from_settings(settings, model=OfflineModel(word_delay=0))
        self.conversation, self.turns_done = "", 0
        self.samples: list[float] = []

    def run(self, turns: int, per_conversation: int, measured: bool = True) -> None:
        """Runs `turns` turns, starting a new conversation every `per_conversation` turns."""
        for _ in range(turns):
            if self.turns_done % per_conversation == 0:
                self.conversation = self.service.new_conversation_id()
            start = time.perf_counter()
            run = self.service.send(self.conversation, f"Question {self.turns_done}: how does a burrow stay dry?")
            for _piece in run:  # blocks until the run is done
                pass
            elapsed = time.perf_counter() - start
            if run.outcome != "answered":
                raise RuntimeError(f"{self.backend} turn {self.turns_done} ended {run.outcome}: {run.error}")
            self.turns_done += 1
            if measured:
                self.samples.append(elapsed * 1000)

    def summary(self) -> dict:
        ms = self.samples
        return {"median": statistics.median(ms), "p95": percentile(ms, 0.95), "mean": statistics.fmean(ms),
                "max": max(ms), "turns": len(ms)}


def measure(configs: list[Config], args: argparse.Namespace) -> None:
    """Interleaves the configurations in rounds, so a busy moment on the machine hits them all alike."""
    for config in configs:
        config.run(args.warmup, args.turns_per_conversation, measured=False)
    rounds = max(1, args.turns // args.round_turns)
    for _ in range(rounds):
        for config in configs:
            config.run(args.round_turns, args.turns_per_conversation)


def report(configs: list[Config], model_ms: float) -> None:
    print(f"{'backend':<10} {'tracker':<8} {'turns':>5} {'median ms':>10} {'p95 ms':>8} {'mean ms':>8} {'max ms':>8}")
    for config in configs:
        r = config.summary()
        print(f"{config.backend:<10} {config.tracker:<8} {r['turns']:>5} {r['median']:>10.2f} {r['p95']:>8.2f} "
              f"{r['mean']:>8.2f} {r['max']:>8.2f}")
    print(f"(the offline model alone: median {model_ms:.3f} ms per reply; a turn = 3 persisted Burr steps)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=200, help="measured turns per configuration")
    parser.add_argument("--warmup", type=int, default=10, help="turns run first and not measured")
    parser.add_argument("--round-turns", type=int, default=10, help="turns per configuration per round")
    parser.add_argument("--turns-per-conversation", type=int, default=20)
    parser.add_argument("--pg-url", help="also measure on this PostgreSQL database (a scratch one)")
    parser.add_argument("--start-postgres", action="store_true", help="start a throwaway PostgreSQL server")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="burrow-turn-bench-") as tmp, postgres_url(args.pg_url, args.start_postgres) as pg_url:
        workdir = Path(tmp)
        backends = [("sqlite", f"sqlite:///{workdir / 'bench.db'}")] + ([("postgres", pg_url)] if pg_url else [])
        configs = [Config(name, url, tracking, workdir) for name, url in backends for tracking in (False, True)]
        try:
            measure(configs, args)
        finally:
            for config in configs:
                config.service.close()
    report(configs, model_only_ms(args.turns))


if __name__ == "__main__":
    main()
