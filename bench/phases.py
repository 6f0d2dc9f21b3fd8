"""The three measured phases: one long conversation, loads, and listing a big catalog.

The conversation runs one persister at a time; loads and listings run in rounds over all of them,
so a busy machine slows them alike and the ratios stay meaningful.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from burr.core import State

from bench.targets import Target
from core.facts import without_facts
from bench.timing import TimedPersister
from bench.workload import SAVES_PER_TURN, new_app, run_turn

Progress = Callable[[str], None]
CONVERSATION = ("bench-conversation", "bench-app")  # partition key, app_id of the long conversation
# Timed calls run in rounds over the targets, BLOCK calls of one target at a time: strict alternation
# would time a 1 ms call right after a 30 ms one that flushed the CPU caches, which says more about
# the neighbour than about the call.
BLOCK = 5


def comparable(state: dict) -> dict:
    """A state without the replies' timing facts, which differ between two runs of the same workload."""
    history = state.get("chat_history")
    return {**state, "chat_history": [without_facts(m) for m in history]} if isinstance(history, list) else state


@dataclasses.dataclass
class ConversationResult:
    saves: list[float] = dataclasses.field(default_factory=list)  # seconds, one per save, in order
    bytes_at: dict[int, int] = dataclasses.field(default_factory=dict)  # turns -> stored bytes
    run_seconds: float = 0.0  # wall time of the turns (app + saves)
    vacuum_seconds: float = 0.0
    load_latest: list[float] = dataclasses.field(default_factory=list)  # as the app loads: caches as they are
    load_middle: list[float] = dataclasses.field(default_factory=list)
    load_latest_cold: list[float] = dataclasses.field(default_factory=list)  # the persister's caches emptied first
    load_middle_cold: list[float] = dataclasses.field(default_factory=list)
    same_state: bool | None = None  # latest state equals the first target's (same workload)


@dataclasses.dataclass
class ListingResult:
    seed_seconds: float = 0.0
    seconds: list[float] = dataclasses.field(default_factory=list)
    rows_returned: int = 0
    distinct_in_page: int = 0
    page_is_newest: bool = False  # the page is exactly the newest conversations, newest first


def run_conversation(targets: list[Target], checkpoints: list[int], progress: Progress) -> tuple[dict, dict]:
    """Drives one conversation per target; returns ({label: result}, {turns: raw message bytes}).

    One persister at a time, as a deployment runs one: interleaving them would time Burrow's
    saves while PostgreSQL and the disk are still busy writing Burr's megabyte-sized rows.
    Burrow's persisters go first, so they do not run after Burr's, either.
    """
    results: dict[str, ConversationResult] = {}
    raw_by_target = []
    for target in sorted(targets, key=lambda t: not t.ours):
        results[target.label_id], raw_at = _one_conversation(target, checkpoints, progress)
        raw_by_target.append(raw_at)
    assert all(raw == raw_by_target[0] for raw in raw_by_target), "every persister must see the same messages"
    return results, raw_by_target[0]


def _one_conversation(target: Target, checkpoints: list[int], progress: Progress) -> tuple[ConversationResult, dict]:
    timed = TimedPersister(target.persister())
    app = new_app(timed, *CONVERSATION)
    result, raw_at, raw = ConversationResult(), {}, 0
    for turn in range(1, max(checkpoints) + 1):
        start = time.perf_counter()
        raw += run_turn(app, turn)
        result.run_seconds += time.perf_counter() - start
        if turn in checkpoints:
            raw_at[turn] = raw
            start = time.perf_counter()
            result.bytes_at[turn] = target.stored_bytes()
            result.vacuum_seconds += time.perf_counter() - start
            progress(f"{target.label_id}, turn {turn}: {result.bytes_at[turn] / 1e6:,.1f} MB")
    result.saves = timed.save_seconds
    return result, raw_at


def measure_loads(targets: list[Target], results: dict, last_turn: int, repeat: int) -> None:
    """Load-latest and load-middle, `repeat` rounds over the targets, BLOCK calls each.

    Each is timed twice: as the app loads (what earlier loads left in the persister's cache is used,
    as when a conversation is reloaded every turn) and cold (that cache emptied before each call, as
    for the first load of a conversation in a process). Burr's persisters keep no cache: both equal.
    """
    last_seq = last_turn * SAVES_PER_TURN - 1
    middle_seq = last_seq // 2
    pk, app_id = CONVERSATION
    reference = None
    for target in targets:  # warm-up, and check that every persister returns the same state
        state = comparable(target.persister().load(pk, app_id)["state"].get_all())
        reference = state if reference is None else reference
        results[target.label_id].same_state = state == reference
        target.persister().load(pk, app_id, middle_seq)
    for _ in range(repeat):
        for target in targets:
            persister, result = target.persister(), results[target.label_id]
            for samples, seq, cold in ((result.load_latest, None, False), (result.load_middle, middle_seq, False),
                                       (result.load_latest_cold, None, True), (result.load_middle_cold, middle_seq, True)):
                for _ in range(BLOCK):
                    if cold:
                        target.drop_caches()
                    samples.append(_timed(lambda: persister.load(pk, app_id, seq)))


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def short_turn(index: int) -> list[tuple[str, State]]:
    """The three states one short turn saves (as the app would), for seeding big catalogs cheaply."""
    user = {"role": "user", "content": f"Question number {index} about the weekend trip"}
    reply = {"role": "assistant", "content": f"Answer number {index}: pack light and check the weather."}
    base = {"chat_history": [user], "prompt": user["content"]}
    return [
        ("human_input", State({**base, "__SEQUENCE_ID": 0, "__PRIOR_STEP": "human_input"})),
        ("safety_check", State({**base, "safe": True, "__SEQUENCE_ID": 1, "__PRIOR_STEP": "safety_check"})),
        ("ai_response", State({"chat_history": [user, reply], "prompt": user["content"], "safe": True,
                               "response": reply["content"], "__SEQUENCE_ID": 2, "__PRIOR_STEP": "ai_response"})),
    ]


def seed_catalog(target: Target, count: int) -> float:
    """`count` conversations of one short turn each, saved oldest first; returns the seconds it took."""
    persister = target.persister()
    start = time.perf_counter()
    for index in range(count):
        partition_key, app_id = target.conversation_key(index)
        for sequence_id, (position, state) in enumerate(short_turn(index)):
            persister.save(partition_key, app_id, sequence_id, position, state, "completed")
    return time.perf_counter() - start


def measure_listing(targets: list[Target], count: int, page: int, repeat: int) -> dict[str, ListingResult]:
    """Times listing the newest `page` of `count` seeded conversations, in rounds over the targets."""
    results = {t.label_id: ListingResult() for t in targets}
    # Seeding is not what is measured: the targets seed at the same time (PostgreSQL ones mostly wait).
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        seconds = list(pool.map(lambda t: seed_catalog(t, count), targets))
    for target, took in zip(targets, seconds):
        results[target.label_id].seed_seconds = took
        rows = target.list_rows(page)
        result = results[target.label_id]
        result.rows_returned, result.distinct_in_page = len(rows), len(set(rows[:page]))
        wanted = [target.conversation_key(count - 1 - i)[0 if target.ours else 1] for i in range(page)]
        result.page_is_newest = rows[:page] == wanted
    for _ in range(repeat):
        for target in targets:
            for _ in range(BLOCK):
                results[target.label_id].seconds.append(_timed(lambda: target.list_rows(page)))
    return results


def median(samples: list[float]) -> float:
    return statistics.median(samples) if samples else float("nan")
