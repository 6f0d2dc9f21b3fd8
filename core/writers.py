"""Several writers on one conversation (tabs, processes, servers): one rule, in this one class.

**The rule.** A turn on a branch runs only while it holds that branch's lease
(core/storage/leases.py). It takes the lease before it loads the branch and saves the user's
message, keeps it while the reply streams (one heartbeat thread per process renews every lease
it holds every TTL/3 seconds), and gives it back once the reply, or the failure, is saved.
A writer that finds the lease taken waits, polling, up to its wait limit. A lease whose owner
died (a killed server) expires within TTL seconds and is then taken at once.

So turns on one branch never interleave, whichever process runs them; each starts from the
latest saved state, so every reply follows its own message; and a crash stalls a conversation
for TTL seconds at most. What the next turn finds tells it what happened before: a branch whose
last step is midway through a turn (the user's message or the safety check) while nobody holds
its lease was abandoned; that message stays in the history, marked unanswered.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator

from core.errors import BusyError, StorageError
from core.storage import LeaseStore

log = logging.getLogger(__name__)
LEASE_SECONDS = 5.0
POLL_SECONDS = 0.1


class ConversationBusyError(BusyError):
    """Another turn held the branch for longer than this one could wait."""


@dataclasses.dataclass
class Held:
    """A lease this process holds; `lost` turns True if a renewal found it taken over, and `cancel`
    is set when someone on another server pressed Stop (the heartbeat brings the request)."""

    partition_key: str
    app_id: str
    owner: str
    cancel: threading.Event
    waited: bool = False
    lost: bool = False


class WriterCoordination:
    """Takes, keeps alive and gives back branch leases for the turns of one process."""

    def __init__(self, leases: LeaseStore, ttl: float = LEASE_SECONDS, poll: float = POLL_SECONDS):
        self.leases, self.ttl, self.poll = leases, ttl, poll
        self._held: dict[tuple[str, str], Held] = {}
        self._lock = threading.Lock()
        self._heartbeat: threading.Thread | None = None

    @contextlib.contextmanager
    def hold(self, partition_key: str, app_id: str, wait_limit: float, cancel: threading.Event,
             on_wait: Callable[[], None] | None = None) -> Iterator[Held]:
        """The branch's lease for the duration of the block; ConversationBusyError after `wait_limit`."""
        held = Held(partition_key, app_id, uuid.uuid4().hex, cancel)
        deadline = time.monotonic() + wait_limit
        while not self.leases.acquire(partition_key, app_id, held.owner, self.ttl):
            if not held.waited and on_wait is not None:
                on_wait()
            held.waited = True
            if cancel.is_set() or time.monotonic() >= deadline:
                raise ConversationBusyError(
                    "This conversation is still answering another message (in another tab or on another "
                    "server). Wait for that reply, then send again.")
            time.sleep(self.poll)
        self._keep_alive(held)
        try:
            yield held
        finally:
            self._let_go(held)

    def busy(self, partition_key: str, app_id: str) -> bool:
        """Whether a turn is running on this branch right now, here or anywhere else."""
        return self.leases.holder(partition_key, app_id) is not None

    def busy_conversations(self, partition_keys: list[str]) -> set[str]:
        return self.leases.live_partitions(partition_keys)

    def request_stop(self, partition_key: str, app_id: str | None = None) -> bool:
        """Stops a turn running anywhere on this conversation, within one heartbeat (TTL/3 seconds)."""
        return self.leases.request_stop(partition_key, app_id)

    # ---- the heartbeat -----------------------------------------------------------------------
    def _keep_alive(self, held: Held) -> None:
        with self._lock:
            self._held[(held.partition_key, held.app_id)] = held
            if self._heartbeat is None or not self._heartbeat.is_alive():
                self._heartbeat = threading.Thread(target=self._beat, name="burrow-leases", daemon=True)
                self._heartbeat.start()

    def _let_go(self, held: Held) -> None:
        with self._lock:
            self._held.pop((held.partition_key, held.app_id), None)
        try:
            self.leases.release(held.partition_key, held.app_id, held.owner)
        except StorageError:  # it expires by itself within TTL seconds
            log.warning("Could not release the lease on %s/%s; it expires in %.0f s",
                        held.partition_key, held.app_id, self.ttl, exc_info=True)

    def _beat(self) -> None:
        """Renews every held lease every TTL/3 seconds; ends when none is held (no idle thread)."""
        while True:
            time.sleep(self.ttl / 3)
            with self._lock:
                if not self._held:
                    self._heartbeat = None
                    return
                by_owner = list(self._held.values())
            for held in by_owner:
                try:
                    kept = self.leases.renew(held.owner, [(held.partition_key, held.app_id)], self.ttl)
                except StorageError:
                    log.warning("Could not renew the lease on %s/%s", held.partition_key, held.app_id, exc_info=True)
                    continue
                if not kept:
                    held.lost = True
                elif any(kept.values()):
                    held.cancel.set()  # Stop, pressed where this reply is watched from another server
