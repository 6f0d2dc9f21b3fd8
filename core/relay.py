"""Run events between processes on one PostgreSQL database, with LISTEN/NOTIFY (no new infrastructure).

A run lives in the process that started it (core/runs.py). With a relay, a client that reaches
another process (a second `uvicorn` worker, another server) can still follow it live:

- the owning process publishes each of its runs' events on the channel `burrow_runs` (`publish`);
- a process asked for a run it does not have calls `follow(run_id)`: it asks on `burrow_runs_replay`
  for the run's events from the start, the owner answers by publishing them again (`serve` gives the
  relay the owner's run lookup), and from then on the follower sees the live events as they come;
- the follower gets a `RelayedRun`, whose `events(after, heartbeat)` behave like `Run.events`
  (ordered by index, no event twice, ending with `done`), so the SSE code serves it unchanged.

A NOTIFY payload is limited (8000 bytes): an event whose data is larger is sent without it and
marked `relayed_without_data` (a completed message: the client reads it back from the messages).
Only on PostgreSQL; `Relay.for_url` is None for SQLite (one process: nothing to relay).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from core.errors import StorageError
from core.runs import KEEP_SECONDS, EventKind, EventLog, Run, RunEvent

log = logging.getLogger(__name__)
CHANNEL = "burrow_runs"
REPLAY = "burrow_runs_replay"
MAX_PAYLOAD = 7900  # PostgreSQL refuses NOTIFY payloads of 8000 bytes and more
POLL = 0.5  # seconds the listener waits for a notification before checking whether it should stop


class RelayedRun(EventLog):
    """Another process's run, as seen here: the same reading contract as `Run` (`events`, `on_event`, `since`)."""

    def __init__(self, run_id: str):
        super().__init__()
        self.id = run_id
        self.partition_key: str | None = None
        self.app_id: str | None = None
        self._early: dict[int, RunEvent] = {}  # live events that overtook the replay of earlier ones
        self.heard_at = time.monotonic()  # the last event (or the request to follow): a silent run is dropped

    def feed(self, event: RunEvent, partition_key: str | None, app_id: str | None) -> None:
        """Adds an event, in index order: one that comes early waits for those before it, and one
        already there (replayed and also seen live) is dropped."""
        with self._cond:
            self.partition_key, self.app_id = partition_key, app_id
            self.heard_at = time.monotonic()
            if event.index >= len(self._events):
                self._early[event.index] = event
            while len(self._events) in self._early:
                self._append(self._early.pop(len(self._events)))
        self._wake()

    @property
    def text(self) -> str:
        with self._cond:
            return "".join(e.data.get("text", "") for e in self._events if e.kind is EventKind.DELTA)

    @property
    def outcome(self) -> str | None:
        """How the run ended (its `done` event's outcome), None while it goes on."""
        with self._cond:
            last = self._events[-1] if self._events else None
        return last.data.get("outcome") if last is not None and last.kind is EventKind.DONE else None

    def wait_started(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: bool(self._events), timeout)

    def stale(self, now: float, keep_seconds: float) -> bool:
        """Finished longer ago than `keep_seconds`, or silent that long (its process went away)."""
        ended = self.finished_at
        return (ended is not None and ended < now - keep_seconds) or self.heard_at < now - keep_seconds


def payload(run: Run, event: RunEvent) -> str:
    """One event as a NOTIFY payload, its data left out when it would be too large."""
    body = {"r": run.id, "p": run.partition_key, "a": run.app_id, "i": event.index, "k": event.kind.value,
            "d": event.data}
    text = json.dumps(body, default=str, ensure_ascii=False)
    if len(text.encode()) > MAX_PAYLOAD:
        body["d"] = {"relayed_without_data": True, "sequence_id": event.data.get("sequence_id")}
        text = json.dumps(body, default=str)
    return text


class Relay:
    """One process's end: a connection that publishes, and a listener thread for both channels."""

    def __init__(self, conninfo: str, keep_seconds: float = KEEP_SECONDS):
        import psycopg

        self._psycopg = psycopg
        self._conninfo = conninfo
        self._publisher = psycopg.connect(conninfo, autocommit=True)
        self._publish_lock = threading.Lock()
        self._followed: dict[str, RelayedRun] = {}  # forgotten `keep_seconds` after they end (`_evict`)
        self.keep_seconds = keep_seconds
        self._watched: set[str] = set()  # runs of this process another process follows: only those are sent
        self._lock = threading.Lock()
        self._lookup: Callable[[str], Run | None] = lambda run_id: None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._listener = threading.Thread(target=self._listen, name="burrow-relay", daemon=True)
        self._listener.start()
        self._ready.wait(10)

    @classmethod
    def for_url(cls, database_url: str, keep_seconds: float = KEEP_SECONDS) -> "Relay | None":
        """A relay for a PostgreSQL SQLAlchemy URL; None for any other database."""
        from sqlalchemy.engine import make_url

        url = make_url(database_url)
        if url.get_backend_name() != "postgresql":
            return None
        return cls(url.set(drivername="postgresql").render_as_string(hide_password=False), keep_seconds)

    @classmethod
    def start_for(cls, database_url: str, lookup: Callable[[str], Run | None],
                  keep_seconds: float = KEEP_SECONDS) -> "Relay | None":
        """The relay of a service: None off PostgreSQL, or (logged) when it cannot connect now: runs
        are then followed within this process only, as on SQLite."""
        try:
            relay = cls.for_url(database_url, keep_seconds)
        except Exception:  # the database is down at start: the service must still start and say so itself
            log.warning("The run relay could not connect; runs are followed within this process only",
                        exc_info=True)
            return None
        if relay is not None:
            relay.serve(lookup)
        return relay

    def serve(self, lookup: Callable[[str], Run | None]) -> None:
        """How this process finds its own runs, to answer other processes' replay requests."""
        self._lookup = lookup

    def publish(self, run: Run, event: RunEvent) -> None:
        """Sends one event of a run of this process (a listener of the run, so in order), when another
        process follows that run: nobody pays a NOTIFY per piece of a reply no one else watches."""
        if run.id in self._watched:
            self._notify(CHANNEL, payload(run, event))
            if event.kind is EventKind.DONE:
                self._watched.discard(run.id)

    def follow(self, run_id: str, within: float = 2.0) -> RelayedRun | None:
        """Another process's run, replayed from its first event and then live; None when no process
        answers for it within `within` seconds (unknown, or finished and forgotten everywhere)."""
        with self._lock:
            self._evict()
            relayed = self._followed.setdefault(run_id, RelayedRun(run_id))
        try:
            self._notify(REPLAY, json.dumps({"r": run_id}))
        except self._psycopg.Error as exc:
            with self._lock:
                self._followed.pop(run_id, None)
            raise StorageError("Could not ask the other servers about this run: the database is not "
                               "available. Try again in a moment.") from exc
        if relayed.wait_started(within):
            return relayed
        with self._lock:
            self._followed.pop(run_id, None)
        return None

    def followed(self, run_id: str) -> RelayedRun | None:
        """A run this process already follows (None otherwise; `follow` starts following)."""
        with self._lock:
            self._evict()
            return self._followed.get(run_id)

    def _evict(self) -> None:
        """Forgets followed runs that ended (or went silent) `keep_seconds` ago (the caller holds the lock)."""
        now = time.monotonic()
        for run_id in [r for r, relayed in self._followed.items() if relayed.stale(now, self.keep_seconds)]:
            del self._followed[run_id]

    def close(self) -> None:
        self._stop.set()
        self._listener.join(5)
        with self._publish_lock:
            self._publisher.close()

    # ---- inside -------------------------------------------------------------------------------------
    def _notify(self, channel: str, text: str) -> None:
        """Sends one notification; a connection lost since the last one (a database restart) is made
        again once, so the relay outlives an outage."""
        with self._publish_lock:
            try:
                self._publisher.execute("SELECT pg_notify(%s, %s)", (channel, text))
                return
            except self._psycopg.OperationalError:
                self._publisher.close()
            self._publisher = self._psycopg.connect(self._conninfo, autocommit=True)
            self._publisher.execute("SELECT pg_notify(%s, %s)", (channel, text))

    def _listen(self) -> None:
        """Receives both channels until closed; reconnects (after a pause) when the database goes away."""
        while not self._stop.is_set():
            try:
                with self._psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    conn.execute(f"LISTEN {REPLAY}")
                    self._ready.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=POLL):
                            self._dispatch(note.channel, note.payload)
                        with self._lock:
                            self._evict()
            except self._psycopg.Error:
                log.warning("The run relay lost its database connection; reconnecting", exc_info=True)
                self._stop.wait(1.0)

    def _dispatch(self, channel: str, text: str) -> None:
        try:
            body = json.loads(text)
            if channel == REPLAY:
                self._replay(body["r"])
                return
            with self._lock:
                relayed = self._followed.get(body["r"])
            if relayed is not None:
                relayed.feed(RunEvent(body["i"], EventKind(body["k"]), body["d"]), body.get("p"), body.get("a"))
        except (ValueError, KeyError, self._psycopg.Error):
            log.warning("A run relay message could not be handled", exc_info=True)

    def _replay(self, run_id: str) -> None:
        """Publishes all events so far of one of this process's runs (the live ones follow anyway)."""
        run = self._lookup(run_id)
        if run is None:
            return
        self._watched.add(run_id)  # first, so no event falls between the replay and the live ones
        for event in run.events(heartbeat=0):
            if event is None:
                return  # all there is so far; the rest is published live (the follower drops repeats)
            self._notify(CHANNEL, payload(run, event))

