"""`make bench-api`: Burrow's HTTP API under N concurrent streaming users, against the reference
pattern of Burr's streaming example (bench/api_reference.py), in one run.

Each server is one uvicorn process; the model is the tests' fake OpenAI server (in a process of its
own) streaming `--chunks` pieces `--chunk-delay` s apart. Each user (bench/api_load.py) has its own
conversation and loops: send, read the SSE stream to its end, think `--think` s; users start evenly
over one turn's time, and no turn starts after `--seconds`. Scenarios: the fake model alone (its own
times under this load, the baseline), the reference on Burr's SQLitePersister, Burrow on SQLite and
Burrow on PostgreSQL (a throwaway server with --start-postgres, or --pg-url), and with --workers N
also Burrow on PostgreSQL as one `uvicorn --workers N` with the relay on (CPU: all its processes).

Reported per scenario: turns/s, time to first token and total time added over the model's own
(p50/p99; the model's own: no first-byte delay, chunks x delay in all), errors (non-200, `error`
events, cut or wrong replies), lost messages (a turn the client saw complete whose question and
reply are not saved exactly once, in order, read back through the server afterwards) and the server
process's CPU per turn. Burrow runs with BURROW_MAX_RUNS=--max-runs (default: one per user).

    python -m bench.api --start-postgres                 # 200 users, 30 s per scenario
    python -m bench.api --users 20 --seconds 10          # a quick look, SQLite only
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.api_load import Burrow, ModelAlone, Reference, Turn, drive, saved
from bench.api_model import fake_model
from bench.load import FILLER, ModelSpec
from bench.pg_server import free_port, postgres_url

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# uvicorn's default of 5 s closes a connection whose client, slowed by the load it makes itself, comes
# back late from thinking: its next request meets the closed socket (a ReadError). Both servers get this.
KEEP_ALIVE = 30


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    protocol: Any
    target: str | None  # uvicorn factory; None: the model itself
    env: dict[str, str]
    workers: int = 1  # uvicorn --workers (more than one: with the relay, BURROW_RELAY=true)


@dataclasses.dataclass
class Outcome:
    scenario: Scenario
    users: int
    turns: list[Turn]
    wall: float
    cpu: float | None
    lost: int
    errors: Counter

    @property
    def ok(self) -> list[Turn]:
        return [t for t in self.turns if t.error is None]


def expected_reply(question: str, chunks: int) -> str:
    """What the fake model answers (bench/load.py's reply): names the question, padded to `chunks` pieces."""
    return f"Reply to [{question}] " + " ".join(FILLER[i % len(FILLER)] for i in range(chunks - 3))


@contextlib.contextmanager
def uvicorn_process(target: str, env: dict[str, str], log: Path,
                    workers: int = 1) -> Iterator[tuple[str, psutil.Process]]:
    """One uvicorn process serving `target` (an app factory) on a free loopback port, until the block ends."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--factory", target, "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "warning", "--no-access-log", "--timeout-graceful-shutdown", "5",
               "--timeout-keep-alive", str(KEEP_ALIVE), "--workers", str(workers)]
    with open(log, "ab") as out:
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{target} did not start; see {log}")
            time.sleep(0.1)
        yield url, psutil.Process(process.pid)
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


def check(turns: list[Turn], history: dict[str, list[dict]], chunks: int, protocol: Any) -> tuple[int, Counter]:
    """(lost messages, errors by kind): marks cut or wrong replies as errors, then looks each
    completed turn up in what the server saved."""
    errors: Counter = Counter()
    for turn in turns:
        if turn.error is None and turn.reply.strip() != expected_reply(turn.question, chunks).strip():
            turn.error = "wrong or cut reply"
        if turn.error is not None:
            errors[turn.error] += 1
    if isinstance(protocol, ModelAlone):
        return 0, errors
    lost = 0
    for turn in turns:
        if turn.error is not None:
            continue
        messages = history.get(turn.conversation, [])
        places = [i for i, m in enumerate(messages) if m.get("role") == "user" and m.get("content") == turn.question]
        answered = (len(places) == 1 and places[0] + 1 < len(messages)
                    and messages[places[0] + 1].get("role") == "assistant"
                    and messages[places[0] + 1].get("content", "").strip() == turn.reply.strip())
        lost += not answered
    return lost, errors


def cpu_of(server: psutil.Process) -> float:
    """CPU seconds of the server process and its children (uvicorn --workers runs the app in those)."""
    total = 0.0
    for process in [server, *server.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def run_scenario(scenario: Scenario, model_url: str, args: argparse.Namespace, log: Path) -> Outcome:
    spec = args.spec
    ramp = spec.own_seconds + args.think

    def load(url: str) -> tuple[list[Turn], dict[str, list[str]], float]:
        return asyncio.run(drive(scenario.protocol, url, args.users, args.seconds, args.think, ramp))

    if scenario.target is None:
        turns, conversations, wall = load(model_url)
        lost, errors = check(turns, {}, spec.chunks, scenario.protocol)
        return Outcome(scenario, args.users, turns, wall, None, lost, errors)
    env = {"OPENAI_BASE_URL": model_url, "OPENAI_API_KEY": "sk-bench", **scenario.env}
    with uvicorn_process(scenario.target, env, log, scenario.workers) as (url, server):
        asyncio.run(drive(scenario.protocol, url, 1, 0.01, 0.0, 0.0))  # warm-up: first imports, connections
        before = cpu_of(server)
        turns, conversations, wall = load(url)
        after = cpu_of(server)
        history = asyncio.run(saved(scenario.protocol, url, conversations))
    cpu = after - before
    lost, errors = check(turns, history, spec.chunks, scenario.protocol)
    return Outcome(scenario, args.users, turns, wall, cpu, lost, errors)


def scenarios(args: argparse.Namespace, work: Path, pg_url: str | None) -> list[Scenario]:
    burrow = {"BURROW_MAX_RUNS": str(args.max_runs), "BURROW_TRACKER_PROJECT": "off", "BURROW_MAX_RETRIES": "0",
              "BURROW_REQUEST_TIMEOUT": "60", "BURROW_LOG_LEVEL": "WARNING"}
    found = [Scenario("fake model alone (baseline)", ModelAlone(), None, {}),
             Scenario("floor: bare relay, async client", ModelAlone(), "bench.api_floor:create_app", {}),
             Scenario("floor: bare relay, client on a thread", ModelAlone(), "bench.api_floor:create_app",
                      {"BENCH_FLOOR_MODE": "thread"}),
             Scenario("reference: Burr example, SQLitePersister", Reference(), "bench.api_reference:create_app",
                      {"BENCH_REF_DB": str(work / "reference.db")}),
             Scenario("Burrow, SQLite", Burrow(), "server.app:create_app",
                      {**burrow, "BURROW_DATABASE_URL": f"sqlite:///{work}/burrow.db"})]
    if pg_url:
        found.append(Scenario("Burrow, PostgreSQL", Burrow(), "server.app:create_app",
                              {**burrow, "BURROW_DATABASE_URL": pg_url}))
        if args.workers > 1:  # each worker has its own run limit: the users' share of it
            found.append(Scenario(f"Burrow, PostgreSQL, {args.workers} workers, relay", Burrow(),
                                  "server.app:create_app", {**burrow, "BURROW_DATABASE_URL": pg_url,
                                                            "BURROW_RELAY": "true"}, args.workers))
    return [s for s in found if not args.only or any(word.lower() in s.name.lower() for word in args.only)]


# ---- report ------------------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


def row(outcome: Outcome, spec: ModelSpec) -> dict[str, Any]:
    ok = outcome.ok
    ttft = [(t.ttft or 0) - spec.first_byte for t in ok]
    total = [(t.total or 0) - spec.own_seconds for t in ok]
    return {"scenario": outcome.scenario.name, "users": outcome.users, "turns": len(ok),
            "turns_s": len(ok) / outcome.wall if outcome.wall else 0.0,
            "ttft_p50": pct(ttft, 0.5) * 1000, "ttft_p99": pct(ttft, 0.99) * 1000,
            "total_p50": pct(total, 0.5) * 1000, "total_p99": pct(total, 0.99) * 1000,
            "errors": sum(outcome.errors.values()), "error_kinds": dict(outcome.errors), "lost": outcome.lost,
            "cpu_ms": (outcome.cpu / len(ok) * 1000) if outcome.cpu is not None and ok else None}


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| scenario | users | turns | turns/s | added TTFT p50 / p99 | added total p50 / p99 | errors | lost "
             "| server CPU / turn |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cpu = "n/a (no server)" if r["cpu_ms"] is None else f"{r['cpu_ms']:.1f} ms"
        kinds = f" ({', '.join(f'{k}: {v}' for k, v in r['error_kinds'].items())})" if r["error_kinds"] else ""
        lines.append(f"| {r['scenario']} | {r['users']} | {r['turns']} | {r['turns_s']:.1f} | "
                     f"{r['ttft_p50']:.0f} / {r['ttft_p99']:.0f} ms | {r['total_p50']:.0f} / {r['total_p99']:.0f} ms | "
                     f"{r['errors']}{kinds} | {r['lost']} | {cpu} |")
    return "\n".join(lines)


def verdicts(all_rows: list[dict[str, Any]]) -> list[str]:
    found = []
    for users in sorted({r["users"] for r in all_rows}):
        found += verdicts_at([r for r in all_rows if r["users"] == users])
    return found


def verdicts_at(rows: list[dict[str, Any]]) -> list[str]:
    by = {r["scenario"]: r for r in rows}
    pg, ref = by.get("Burrow, PostgreSQL"), by.get("reference: Burr example, SQLitePersister")
    found = []
    if pg:
        found.append(f"- PostgreSQL, {pg['users']} users: {pg['errors']} errors, {pg['lost']} lost, added TTFT p99 "
                     f"{pg['ttft_p99']:.0f} ms (target 0, 0, < 150 ms): "
                     f"{'met' if pg['errors'] == 0 and pg['lost'] == 0 and pg['ttft_p99'] < 150 else 'MISSED'}")
    for mine in (by.get("Burrow, SQLite"), pg):
        if mine and ref:
            ahead = mine["errors"] <= ref["errors"] and mine["ttft_p99"] < ref["ttft_p99"] \
                and mine["total_p99"] < ref["total_p99"]
            found.append(f"- {mine['scenario']} vs the reference, {mine['users']} users: errors {mine['errors']} vs {ref['errors']}, "
                         f"p99 added TTFT {mine['ttft_p99']:.0f} vs {ref['ttft_p99']:.0f} ms, p99 added total "
                         f"{mine['total_p99']:.0f} vs {ref['total_p99']:.0f} ms: {'ahead' if ahead else 'NOT ahead'}")
    return found


def short_name(scenario: str) -> str:
    """A tick label that still tells the two floor variants apart."""
    if scenario.startswith("floor"):
        return "floor, " + scenario.rsplit(",", 1)[-1].replace(" client", "").strip()
    return scenario.split(":")[0].replace("fake model alone (baseline)", "model alone")


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"{short_name(r['scenario'])}\n{r['users']} users" for r in rows]
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 1.3 * len(rows)), 8))
    for ax, key, title in ((axes[0], "ttft", "time to first token added (ms)"),
                           (axes[1], "total", "total time added over the model's own (ms)")):
        xs = range(len(rows))
        ax.bar([x - 0.2 for x in xs], [max(r[f"{key}_p50"], 0.1) for r in rows], 0.4, label="p50")
        ax.bar([x + 0.2 for x in xs], [max(r[f"{key}_p99"], 0.1) for r in rows], 0.4, label="p99")
        ax.set_xticks(list(xs), names, fontsize=8)
        ax.set_yscale("log")
        ax.set_title(title)
        ax.legend()
    fig.suptitle("concurrent streaming users, one uvicorn process (bench/api.py)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(rows: list[dict[str, Any]], args: argparse.Namespace, command: str) -> str:
    spec = args.spec
    text = "\n".join([
        "# HTTP API benchmark (`make bench-api`)", "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} cores: `{command}`", "",
        f"{', '.join(map(str, args.users))} users, each with its own conversation: send, read the stream to its end, think {args.think:g} s; "
        f"{args.seconds:g} s of load per scenario. The fake model streams {spec.chunks} pieces {spec.chunk_delay:g} s "
        f"apart (its own time {spec.own_seconds:g} s, first piece at once). Burrow: BURROW_MAX_RUNS="
        f"{args.max_runs or 'the number of users'}. "
        "Client, fake model and server share the machine.", "",
        table(rows), "", *verdicts(rows), "", "![plot](api.png)", ""])
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, nargs="+", default=[50, 200],
                        help="concurrent users; several numbers: each scenario at each")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--think", type=float, default=1.0)
    parser.add_argument("--chunks", type=int, default=60)
    parser.add_argument("--chunk-delay", type=float, default=0.05)
    parser.add_argument("--max-runs", type=int, default=None, help="BURROW_MAX_RUNS (default: --users)")
    parser.add_argument("--start-postgres", action="store_true")
    parser.add_argument("--pg-url")
    parser.add_argument("--workers", type=int, default=1,
                        help="also Burrow on PostgreSQL as one `uvicorn --workers N` with BURROW_RELAY=true")
    parser.add_argument("--only", nargs="*", help="run the scenarios whose name has one of these words")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/results alone")
    args = parser.parse_args(argv)
    args.spec = ModelSpec(first_byte=0.0, chunks=args.chunks, chunk_delay=args.chunk_delay)
    command = "python -m bench.api " + " ".join(argv if argv is not None else sys.argv[1:])
    rows = []
    with tempfile.TemporaryDirectory(prefix="burrow-bench-api-") as tmp, \
            postgres_url(args.pg_url, args.start_postgres) as pg_url, fake_model(args.spec) as model_url:
        work = Path(tmp)
        for users in args.users:
            run_args = argparse.Namespace(**{**vars(args), "users": users, "max_runs": args.max_runs or users})
            for scenario in scenarios(run_args, work, pg_url):
                print(f"{scenario.name}, {users} users ...", flush=True)
                outcome = run_scenario(scenario, model_url, run_args, work / "server.log")
                rows.append(row(outcome, args.spec) | {"max_runs": run_args.max_runs})
                print(table(rows[-1:]).splitlines()[-1], flush=True)
        log_tail = (work / "server.log").read_text(errors="replace")[-3000:] if (work / "server.log").exists() else ""
    report = write_report(rows, args, command)
    print(report)
    if log_tail.strip():
        print("---- server log (tail) ----\n" + log_tail)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "api.md").write_text(report)
        plot(rows, RESULTS / "api.png")
    return 0 if all(r["errors"] == 0 and r["lost"] == 0 for r in rows if r["scenario"].startswith("Burrow")) else 1


if __name__ == "__main__":
    sys.exit(main())
