"""Runs: chat turns that the service executes on its own worker threads, which clients watch, not own.

A page (or an HTTP request) that starts a turn gets a `Run` back at once. The run goes on whatever
the client does: a Streamlit rerun, a closed tab or a dropped connection only ends that client's
`events()` loop. Everything a run produces is kept in order as numbered `RunEvent`s, so a client
that attaches late (another tab, a reload, an SSE reconnect with Last-Event-ID) first gets what it
missed, then the live tail. Only `Run.stop()`, the request timeout or `RunManager.shutdown()` end a
run early; the turn then keeps what arrived, marked as stopped.

One worker thread per run, at most `max_runs` at once per process (beyond that, `BusyError`);
each thread ends with its run. A finished run is remembered for `keep_seconds` (BURROW_RUN_KEEP_SECONDS),
so a client re-attaching after a dropped connection still gets the end, then forgotten; at most
`keep_finished` are kept, the oldest going first, so a busy process's memory stays bounded.
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
KEEP_FINISHED = 2048  # finished runs remembered at most, for late attachers; the oldest go first
KEEP_SECONDS = 300.0  # how long a finished run is remembered (BURROW_RUN_KEEP_SECONDS)


class EventKind(str, enum.Enum):
    """What a run reports, in the order a client sees it."""

    STARTED = "run.started"  # data: partition_key, app_id
    WAITING = "run.waiting"  # data: reason ("queued behind another writer", "retrying")
    DELTA = "message.delta"  # data: text
    NOTICE = "run.notice"  # data: text (e.g. the conversation changed in another tab)
    COMPLETED = "message.completed"  # data: message, sequence_id
    ERROR = "error"  # data: message, retryable
    DONE = "done"  # data: outcome; always the last event


@dataclasses.dataclass(frozen=True, slots=True)
class RunEvent:
    index: int  # 0, 1, 2, ... within the run: the SSE event id
    kind: EventKind
    data: dict[str, Any]


class EventLog:
    """A run's numbered events as its readers see them: a blocking `events()` for threads, and
    `on_event` + `since` for an event loop, which is woken instead of keeping a thread per reader.
    Thread-safe. `Run` (this process's) and core/relay.py's `RelayedRun` (another's) are both one."""

    def __init__(self) -> None:
        self._events: list[RunEvent] = []
        self._cond = threading.Condition()
        self._wakers: tuple[Callable[[], None], ...] = ()  # replaced, never changed in place
        self.finished_at: float | None = None  # time.monotonic() of the last event (done), for eviction

    def _append(self, event: RunEvent) -> None:
        """Adds an event under the lock (the caller holds it) and notes the end."""
        self._events.append(event)
        if event.kind is EventKind.DONE:
            self.finished_at = time.monotonic()
        self._cond.notify_all()

    def _wake(self) -> None:
        """Tells the event-loop readers (outside the lock); one that fails is dropped, the run goes on."""
        for wake in self._wakers:
            try:
                wake()
            except Exception:
                log.warning("A reader of a run could not be woken", exc_info=True)

    @property
    def done(self) -> bool:
        with self._cond:
            return bool(self._events) and self._events[-1].kind is EventKind.DONE

    def on_event(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Calls `wake()` on the publishing thread after each new event (it must only schedule, not
        work), until the returned function is called. Read the events with `since`."""
        with self._cond:
            self._wakers = (*self._wakers, wake)

        def stop() -> None:
            with self._cond:
                self._wakers = tuple(w for w in self._wakers if w is not wake)
        return stop

    def since(self, position: int) -> list[RunEvent]:
        """The events from index `position` on that are there now, without waiting."""
        with self._cond:
            return self._events[position:]

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


class Run(EventLog):
    """One turn in progress or finished. Thread-safe; `events()` may be called by many clients."""

    def __init__(self, partition_key: str, app_id: str | None, owner: str = "local"):
        super().__init__()
        self.id = uuid.uuid4().hex
        self.partition_key, self.app_id = partition_key, app_id
        self.owner = owner  # the subject of the user who started it (core/users.py): only they may follow it
        self.started_at = time.time()
        self.cancel = threading.Event()  # set by stop(); the turn's model call watches it
        self.outcome: str | None = None
        self.error: BaseException | None = None  # in-process callers may inspect it; events carry its text
        self._text: list[str] = []
        self.listeners: list[Callable[["Run", RunEvent], None]] = []  # told of each event, in order

    # ---- the worker's side -----------------------------------------------------------------------
    def publish(self, kind: EventKind, /, **data: Any) -> None:
        with self._cond:
            if self._events and self._events[-1].kind is EventKind.DONE:
                return  # nothing follows the end
            if kind is EventKind.DELTA:
                self._text.append(data["text"])
            event = RunEvent(len(self._events), kind, data)
            self._append(event)
        self._wake()
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


class RunManager:
    """Starts runs on worker threads, at most `max_runs` at once, and finds them again by id."""

    def __init__(self, max_runs: int, keep_finished: int = KEEP_FINISHED, keep_seconds: float = KEEP_SECONDS):
        self.max_runs, self.keep_finished, self.keep_seconds = max_runs, keep_finished, keep_seconds
        self._active: dict[str, tuple[Run, threading.Thread]] = {}
        self._finished: OrderedDict[str, tuple[Run, float]] = OrderedDict()  # run id -> (run, when it ended)
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
                self._finished[run.id] = (run, time.monotonic())
                self._evict()
            run.finish(outcome)

    def _evict(self) -> None:
        """Forgets the finished runs past their time or beyond the bound (the caller holds the lock)."""
        expired = time.monotonic() - self.keep_seconds
        while self._finished and (len(self._finished) > self.keep_finished
                                  or next(iter(self._finished.values()))[1] < expired):
            self._finished.popitem(last=False)

    def get(self, run_id: str) -> Run | None:
        with self._lock:
            found = self._active.get(run_id)
            if found:
                return found[0]
            self._evict()
            finished = self._finished.get(run_id)
            return finished[0] if finished else None

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
