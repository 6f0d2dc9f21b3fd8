"""Runs: chat turns that the service executes on its own worker threads, which clients watch, not own.

A page (or an HTTP request) that starts a turn gets a `Run` back at once. The run goes on whatever
the client does: a Streamlit rerun, a closed tab or a dropped connection only ends that client's
`events()` loop. Everything a run produces is kept in order as numbered `RunEvent`s, so a client
that attaches late (another tab, a reload, an SSE reconnect with Last-Event-ID) first gets what it
missed, then the live tail. Only `Run.stop()`, the request timeout or `RunManager.shutdown()` end a
run early; the turn then keeps what arrived, marked as stopped.

One worker thread per run, at most `max_runs` at once per process (beyond that, `BusyError`);
each thread ends with its run, and finished runs are remembered (bounded) so late attachers still
see how they ended.
"""
from __future__ import annotations

import contextvars
import dataclasses
import enum
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from core.errors import BusyError

log = logging.getLogger(__name__)
KEEP_FINISHED = 256  # finished runs remembered for late attachers, newest first out last


class EventKind(str, enum.Enum):
    """What a run reports, in the order a client sees it."""

    STARTED = "run.started"  # data: partition_key, app_id
    WAITING = "run.waiting"  # data: reason ("queued behind another writer", "retrying")
    DELTA = "message.delta"  # data: text
    NOTICE = "run.notice"  # data: text (e.g. the conversation changed in another tab)
    COMPLETED = "message.completed"  # data: message, sequence_id
    ERROR = "error"  # data: message, retryable
    DONE = "done"  # data: outcome; always the last event


@dataclasses.dataclass(frozen=True)
class RunEvent:
    index: int  # 0, 1, 2, ... within the run: the SSE event id
    kind: EventKind
    data: dict[str, Any]


class Run:
    """One turn in progress or finished. Thread-safe; `events()` may be called by many clients."""

    def __init__(self, partition_key: str, app_id: str | None, owner: str = "local"):
        self.id = uuid.uuid4().hex
        self.partition_key, self.app_id = partition_key, app_id
        self.owner = owner  # the subject of the user who started it (core/users.py): only they may follow it
        self.started_at = time.time()
        self.cancel = threading.Event()  # set by stop(); the turn's model call watches it
        self.outcome: str | None = None
        self.error: BaseException | None = None  # in-process callers may inspect it; events carry its text
        self._events: list[RunEvent] = []
        self._text: list[str] = []
        self._cond = threading.Condition()
        self.listeners: list[Callable[["Run", RunEvent], None]] = []  # told of each event, in order

    # ---- the worker's side -----------------------------------------------------------------------
    def publish(self, kind: EventKind, /, **data: Any) -> None:
        with self._cond:
            if self._events and self._events[-1].kind is EventKind.DONE:
                return  # nothing follows the end
            if kind is EventKind.DELTA:
                self._text.append(data["text"])
            event = RunEvent(len(self._events), kind, data)
            self._events.append(event)
            self._cond.notify_all()
        for listener in self.listeners:  # outside the lock: a listener may be slow (core/relay.py)
            try:
                listener(self, event)
            except Exception:  # a listener's trouble must never end the run
                log.warning("A listener of run %s failed", self.id, exc_info=True)

    def finish(self, outcome: str) -> None:
        self.outcome = outcome
        self.publish(EventKind.DONE, outcome=outcome)

    # ---- the clients' side -----------------------------------------------------------------------
    @property
    def done(self) -> bool:
        with self._cond:
            return bool(self._events) and self._events[-1].kind is EventKind.DONE

    @property
    def text(self) -> str:
        """The reply so far."""
        with self._cond:
            return "".join(self._text)

    reply = text

    @property
    def notice(self) -> str | None:
        """The latest notice (e.g. the conversation changed in another tab), if any."""
        with self._cond:
            notices = [e.data["text"] for e in self._events if e.kind is EventKind.NOTICE]
        return notices[-1] if notices else None

    def __iter__(self) -> Iterator[str]:
        """The reply's pieces, from the first, until the run is done (blocking); leaving early only detaches."""
        for event in self.events():
            if event is not None and event.kind is EventKind.DELTA:
                yield event.data["text"]

    def stop(self) -> None:
        """Ends the model call; what arrived so far is kept and saved as stopped."""
        self.cancel.set()

    def events(self, after: int = -1, heartbeat: float | None = None) -> Iterator[RunEvent | None]:
        """Events with index > `after`: those already there, then each new one as it comes, ending
        with DONE. With `heartbeat`, yields None whenever that many seconds pass without an event
        (an SSE keep-alive, or a chance for a page to notice it should stop listening)."""
        position = after + 1
        while True:
            with self._cond:
                finished = bool(self._events) and self._events[-1].kind is EventKind.DONE
                if position >= len(self._events):
                    if finished:
                        return  # attached after the end: nothing more will come
                    self._cond.wait(heartbeat)
                fresh = self._events[position:]
            if not fresh:
                yield None
                continue
            for event in fresh:
                yield event
                if event.kind is EventKind.DONE:
                    return
            position = fresh[-1].index + 1

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks until the run is done (True) or `timeout` passes (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not (self._events and self._events[-1].kind is EventKind.DONE):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True


class RunManager:
    """Starts runs on worker threads, at most `max_runs` at once, and finds them again by id."""

    def __init__(self, max_runs: int, keep_finished: int = KEEP_FINISHED):
        self.max_runs, self.keep_finished = max_runs, keep_finished
        self._active: dict[str, tuple[Run, threading.Thread]] = {}
        self._finished: OrderedDict[str, Run] = OrderedDict()
        self._lock = threading.Lock()
        self._closed = False

    def start(self, run: Run, work: Callable[[Run], str]) -> Run:
        """Runs `work(run)` (returning the outcome) on a new worker thread; BusyError when the process is
        at its limit or closing."""
        with self._lock:
            if self._closed:
                raise BusyError("Burrow is shutting down and takes no new messages; try again in a moment.")
            if len(self._active) >= self.max_runs:
                raise BusyError(f"Burrow is answering {len(self._active)} messages right now, its limit "
                                "(BURROW_MAX_RUNS); try again in a moment.")
            # The caller's context goes along (its tracing span, so a run's steps nest under the request).
            worker = threading.Thread(target=contextvars.copy_context().run, args=(self._execute, run, work),
                                      name=f"burrow-run-{run.id[:8]}", daemon=True)
            self._active[run.id] = (run, worker)
        worker.start()
        return run

    def _execute(self, run: Run, work: Callable[[Run], str]) -> None:
        """Runs the work, which returns the run's outcome; the slot is given back before DONE is
        published, so a client that saw DONE can start its next run at once."""
        outcome = "failed"
        try:
            outcome = work(run)
        except BaseException:  # a bug in the turn: the run must still end, and say so
            log.exception("Run %s on conversation %s ended with an unexpected error", run.id, run.partition_key)
            run.publish(EventKind.ERROR, message="Something went wrong while answering; try again.", retryable=True)
        finally:
            with self._lock:
                self._active.pop(run.id, None)
                self._finished[run.id] = run
                while len(self._finished) > self.keep_finished:
                    self._finished.popitem(last=False)
            run.finish(outcome)

    def get(self, run_id: str) -> Run | None:
        with self._lock:
            found = self._active.get(run_id)
            return found[0] if found else self._finished.get(run_id)

    def active(self, partition_key: str | None = None) -> list[Run]:
        """Runs in progress (of one conversation), oldest first."""
        with self._lock:
            runs = [run for run, _ in self._active.values()]
        return [run for run in runs if partition_key is None or run.partition_key == partition_key]

    def shutdown(self, timeout: float = 10.0) -> None:
        """Takes no new runs, stops the running ones (their partial replies are saved as stopped) and
        waits up to `timeout` seconds for them to finish saving."""
        with self._lock:
            self._closed = True
            running = list(self._active.values())
        for run, _ in running:
            run.stop()
        deadline = time.monotonic() + timeout
        for run, worker in running:
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                log.warning("Run %s on conversation %s did not finish within %.0f s of shutdown",
                            run.id, run.partition_key, timeout)
