"""Load test: N simulated users chatting at once against ONE ChatService (one process, one database).

The model is the fake OpenAI server (tests/support/fake_openai.py) in a child process on loopback,
answering every turn in a fixed time (first-byte delay + chunk delays), so what is measured on top
of it is Burrow's own cost under concurrency: Burr steps, persistence, locking, connection pools.
Each user is a thread running K turns through the real `openai` client: it sends (the service
starts a run on one of its worker threads and returns it at once) and follows the run's pieces to
the end. Most users have their own conversation; `--shared` users all write to one conversation,
as several tabs would (their turns queue on that branch's lease). The service may answer
`--max-runs` turns at once (BURROW_MAX_RUNS; default: one per user, so no send is refused);
a send refused as busy counts as an error.

Reported per database: turns/s, p50/p99 added latency (turn wall time minus the model's fixed time;
own-conversation turns and shared-conversation turns apart, the latter include queueing behind each
other), errors, and lost messages: afterwards every sent message is looked up in the database through
a fresh connection, and must be there exactly once, followed by its own reply.

    python -m bench.load                                   # SQLite, 20 users
    python -m bench.load --start-postgres                  # + PostgreSQL, 50 users (throwaway server)
    python -m bench.load --pg-url postgresql+psycopg://user@127.0.0.1:5432/scratch --pg-users 50

Bounded: users x turns turns, and no new turn starts after --max-seconds. Exit status 1 if any
error or lost message (the targets are zero of each at 20 users on SQLite and 50 on PostgreSQL).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import multiprocessing
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from core.chat import ChatService
from core.errors import BusyError
from core.settings import Settings
from bench.pg_server import postgres_url

FILLER = "burrows keep their tunnels dry with a raised entrance and a sloping floor".split()


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The fake model's fixed timing: nothing for `first_byte` s, then `chunks` pieces `chunk_delay` s apart."""

    first_byte: float = 0.2
    chunks: int = 12
    chunk_delay: float = 0.01

    @property
    def own_seconds(self) -> float:
        return self.first_byte + self.chunks * self.chunk_delay


@dataclasses.dataclass(frozen=True)
class Plan:
    users: int
    turns: int
    shared: int
    max_seconds: float


@dataclasses.dataclass
class Sample:
    user: int
    conversation: str
    text: str
    seconds: float
    outcome: str
    error: str | None
    shared: bool
    ended: float  # time.perf_counter() when the turn finished


@dataclasses.dataclass
class Result:
    backend: str
    plan: Plan
    began: float
    wall: float
    cpu: float  # seconds of CPU this process used during the run (all threads)
    samples: list[Sample]
    lost: list[str]
    misplaced: list[str]

    @property
    def errors(self) -> list[Sample]:
        return [s for s in self.samples if s.outcome != "answered"]

    def own_turns_per_second(self) -> float:
        """Throughput of the own-conversation users alone: the shared conversation's queue is a tail."""
        own = [s for s in self.samples if not s.shared and s.outcome == "answered"]
        return len(own) / (max(s.ended for s in own) - self.began) if own else float("nan")


# ---- the model, in a process of its own ----------------------------------------------------------
def model_reply(messages: list[dict]) -> str:
    """Names the question it answers (so the check can pair them) and pads to a fixed chunk count."""
    return f"Reply to [{messages[-1]['content']}]"


def _serve_model(spec: ModelSpec, ready: multiprocessing.Queue, stop: multiprocessing.Event) -> None:
    from tests.support.fake_openai import FakeOpenAI

    # "Reply", "to" and "[question]" are 3 of the pieces (a question has no spaces); filler makes the rest.
    padding = " " + " ".join(FILLER[i % len(FILLER)] for i in range(spec.chunks - 3))

    def reply(messages: list[dict]) -> str:
        return model_reply(messages) + padding

    server = FakeOpenAI(reply, chunk_delay=spec.chunk_delay).start("127.0.0.1", 0)
    server.first_byte_delay = spec.first_byte
    ready.put(server.base_url)
    stop.wait()
    server.stop()


@contextlib.contextmanager
def fake_model(spec: ModelSpec) -> Iterator[str]:
    """Starts the fake OpenAI server in a child process; yields its base URL."""
    ctx = multiprocessing.get_context("fork")
    ready, stop = ctx.Queue(), ctx.Event()
    process = ctx.Process(target=_serve_model, args=(spec, ready, stop), daemon=True)
    process.start()
    try:
        yield ready.get(timeout=30)
    finally:
        stop.set()
        process.join(10)
        if process.is_alive():
            process.terminate()


# ---- the users ---------------------------------------------------------------------------------------
def question(user: int, turn: int) -> str:
    """One word (no spaces), unique in the run, so the reply's chunk count is fixed and pairs are checkable."""
    return f"u{user}-t{turn}-{uuid.uuid4().hex[:8]}"


def user_loop(service: ChatService, user: int, conversation: str, plan: Plan, deadline: float,
              shared: bool, samples: list[Sample], start: threading.Barrier) -> None:
    start.wait()
    for turn_index in range(plan.turns):
        if time.monotonic() > deadline:
            return
        text = question(user, turn_index)
        began = time.perf_counter()
        try:
            run = service.send(conversation, text)  # returns at once; the turn runs on a worker thread
            for _piece in run:  # blocks until the run is done
                pass
            outcome, error = run.outcome or "failed", None if run.error is None else str(run.error)
        except BusyError as exc:  # the process is at BURROW_MAX_RUNS
            outcome, error = "busy", str(exc)
        except Exception as exc:  # noqa: BLE001 - a load test counts every failure, whatever it is
            outcome, error = "crashed", f"{type(exc).__name__}: {exc}"
        ended = time.perf_counter()
        samples.append(Sample(user, conversation, text, ended - began, outcome, error, shared, ended))


def run_users(service: ChatService, plan: Plan) -> tuple[float, float, list[Sample]]:
    samples: list[Sample] = []
    shared_conversation = service.new_conversation_id()
    start = threading.Barrier(plan.users)
    deadline = time.monotonic() + plan.max_seconds
    threads = []
    for user in range(plan.users):
        shared = user < plan.shared
        conversation = shared_conversation if shared else service.new_conversation_id()
        threads.append(threading.Thread(target=user_loop, name=f"user-{user}", daemon=True,
                                        args=(service, user, conversation, plan, deadline, shared, samples, start)))
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(1.0, deadline - time.monotonic() + 120))
    return began, time.perf_counter() - began, samples


# ---- the check: is every message there? --------------------------------------------------------
def find_losses(database_url: str, samples: list[Sample]) -> tuple[list[str], list[str]]:
    """(sent messages missing from the database, messages stored without their own reply after them)."""
    reader = ChatService.from_settings(Settings(database_url=database_url, tracker_project=None))
    try:
        stored: dict[str, list[dict]] = {}
        for conversation in {s.conversation for s in samples}:
            stored[conversation] = reader.open(conversation).messages
    finally:
        reader.close()
    lost, misplaced = [], []
    for sample in samples:
        if sample.outcome != "answered":
            continue  # counted as an error already; a failed turn may rightly keep only the question
        messages = stored[sample.conversation]
        positions = [i for i, m in enumerate(messages) if m["role"] == "user" and m["content"] == sample.text]
        if len(positions) != 1:
            lost.append(f"{sample.text} (found {len(positions)} times)")
        elif not _answered_right_after(messages, positions[0], sample.text):
            misplaced.append(sample.text)
    return lost, misplaced


def _answered_right_after(messages: list[dict], index: int, text: str) -> bool:
    following = messages[index + 1] if index + 1 < len(messages) else {}
    return following.get("role") == "assistant" and following.get("content", "").startswith(f"Reply to [{text}]")


def model_call_alone_ms(base_url: str, spec: ModelSpec, calls: int = 20) -> tuple[float, float]:
    """(median added ms, CPU ms per call) of the bare model call (openai client + fake server), no Burrow."""
    from core.llm import OpenAIChatModel

    model = OpenAIChatModel(Settings(openai_base_url=base_url, openai_api_key="sk-load-test", max_retries=0))
    "".join(model.stream([{"role": "user", "content": "warm-up"}]))  # first use builds the SDK's types
    samples, cpu_before = [], time.process_time()
    for index in range(calls):
        began = time.perf_counter()
        "".join(model.stream([{"role": "user", "content": question(-1, index)}]))
        samples.append((time.perf_counter() - began - spec.own_seconds) * 1000)
    cpu_ms = (time.process_time() - cpu_before) * 1000 / calls
    model.client.close()
    return statistics.median(samples), cpu_ms


# ---- one database ------------------------------------------------------------------------------------
def run_backend(backend: str, database_url: str, plan: Plan, base_url: str, args: argparse.Namespace,
                workdir: Path) -> Result:
    settings = Settings(database_url=database_url, openai_base_url=base_url, openai_api_key="sk-load-test",
                        max_retries=0, request_timeout=60, max_runs=args.max_runs or plan.users,
                        tracker_project="load" if args.tracker else None, tracker_dir=str(workdir / "tracker"))
    service = ChatService.from_settings(settings)
    try:
        cpu_before = time.process_time()
        began, wall, samples = run_users(service, plan)
        cpu = time.process_time() - cpu_before
    finally:
        service.close()  # every run has ended by now (each user followed its own to DONE)
    lost, misplaced = find_losses(database_url, samples)
    return Result(backend, plan, began, wall, cpu, samples, lost, misplaced)


# ---- report ------------------------------------------------------------------------------------------
def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def added_ms(samples: list[Sample], spec: ModelSpec) -> list[float]:
    return [(s.seconds - spec.own_seconds) * 1000 for s in samples if s.outcome == "answered"]


def report(results: list[Result], spec: ModelSpec, args: argparse.Namespace, alone: tuple[float, float]) -> None:
    print(f"model: fixed {spec.own_seconds * 1000:.0f} ms per reply ({spec.first_byte * 1000:.0f} ms to first byte, "
          f"{spec.chunks} chunks {spec.chunk_delay * 1000:.0f} ms apart); tracker {'on' if args.tracker else 'off'}; "
          f"BURROW_MAX_RUNS {args.max_runs or 'one per user'}")
    print(f"the bare model call (openai client + fake server, no Burrow, one at a time) adds {alone[0]:.1f} ms "
          f"(median) and costs {alone[1]:.1f} ms CPU here")
    print(f"{'backend':<9}{'users':>6}{'shared':>7}{'turns':>7}{'turns/s':>9}{'own t/s':>9}{'own p50':>9}{'own p99':>9}"
          f"{'shared p50':>11}{'shared p99':>11}{'cpu/turn':>9}{'errors':>8}{'lost':>6}{'misplaced':>10}")
    for r in results:
        own = added_ms([s for s in r.samples if not s.shared], spec)
        shared = added_ms([s for s in r.samples if s.shared], spec)
        answered = sum(1 for s in r.samples if s.outcome == "answered")
        print(f"{r.backend:<9}{r.plan.users:>6}{r.plan.shared:>7}{len(r.samples):>7}{answered / r.wall:>9.1f}{r.own_turns_per_second():>9.1f}"
              f"{percentile(own, .5):>9.1f}{percentile(own, .99):>9.1f}{percentile(shared, .5):>11.1f}"
              f"{percentile(shared, .99):>11.1f}{r.cpu * 1000 / max(1, len(r.samples)):>9.1f}{len(r.errors):>8}{len(r.lost):>6}{len(r.misplaced):>10}")
    print("turns/s = all answered turns / run time; own t/s = own-conversation turns / the time they took;")
    print("added latency in ms = turn wall time - the model's fixed time; shared = turns queued on one conversation;")
    print("cpu/turn = CPU ms this process spent per turn (Burrow + openai client; one interpreter lock for all users)")
    for r in results:
        for problem in [f"error: {s.outcome}: {s.error}" for s in r.errors[:5]] + r.lost[:5] + r.misplaced[:5]:
            print(f"  {r.backend}: {problem}")
        expected = r.plan.users * r.plan.turns
        if len(r.samples) < expected:
            print(f"  {r.backend}: only {len(r.samples)} of {expected} turns ran before --max-seconds")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sqlite-users", type=int, default=20)
    parser.add_argument("--pg-users", type=int, default=50)
    parser.add_argument("--turns", type=int, default=5, help="turns per user")
    parser.add_argument("--shared", type=int, default=4, help="users writing to one shared conversation")
    parser.add_argument("--first-byte", type=float, default=0.2, help="model seconds before the first chunk")
    parser.add_argument("--chunks", type=int, default=12, help="reply chunks (at least 4)")
    parser.add_argument("--chunk-delay", type=float, default=0.01, help="model seconds between chunks")
    parser.add_argument("--max-seconds", type=float, default=300, help="no new turn starts after this")
    parser.add_argument("--max-runs", type=int, default=None,
                        help="BURROW_MAX_RUNS of the service (default: the number of users); with fewer, "
                             "some sends are refused as busy and counted as errors")
    parser.add_argument("--tracker", action="store_true", help="Burr's local tracker on (to a temp folder)")
    parser.add_argument("--no-sqlite", action="store_true", help="skip SQLite")
    parser.add_argument("--pg-url", help="also load this PostgreSQL database (a scratch one)")
    parser.add_argument("--start-postgres", action="store_true", help="start a throwaway PostgreSQL server")
    args = parser.parse_args(argv)
    if args.chunks < 4:
        parser.error("--chunks must be at least 4")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    spec = ModelSpec(args.first_byte, args.chunks, args.chunk_delay)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="burrow-load-") as tmp, fake_model(spec) as base_url, \
            postgres_url(args.pg_url, args.start_postgres) as pg_url:
        workdir = Path(tmp)
        alone = model_call_alone_ms(base_url, spec)
        backends = [] if args.no_sqlite else [("sqlite", f"sqlite:///{workdir / 'load.db'}", args.sqlite_users)]
        backends += [("postgres", pg_url, args.pg_users)] if pg_url else []
        for backend, url, users in backends:
            plan = Plan(users, args.turns, min(args.shared, users), args.max_seconds)
            results.append(run_backend(backend, url, plan, base_url, args, workdir))
    report(results, spec, args, alone)
    return 1 if any(r.errors or r.lost or r.misplaced for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
