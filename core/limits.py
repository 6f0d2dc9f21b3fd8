"""Per-user limits, so one user (or one runaway script with their token) cannot take a server's
capacity from everyone else: replies running at once (BURROW_USER_MAX_RUNS) and messages per
minute (BURROW_USER_MESSAGES_PER_MINUTE). Counted in this process: with several server processes
each applies the limits on its own.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

from core.errors import LimitError

WINDOW = 60.0  # seconds of the messages-per-minute window (a sliding window, not a fixed minute)


class UserLimits:
    """Admits a user's new message, or raises LimitError saying when to try again."""

    def __init__(self, max_runs: int, per_minute: int, clock: Callable[[], float] = time.monotonic):
        self.max_runs, self.per_minute, self._clock = max_runs, per_minute, clock
        self._sent: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def admit(self, subject: str, running: int) -> None:
        """Counts a message of `subject`, who has `running` replies going; LimitError when over a limit."""
        if running >= self.max_runs:
            raise LimitError(f"You have {running} replies being written already, your limit at once. "
                             "Wait for one to finish (or stop it), then send again.", retry_after=5)
        if not self.per_minute:
            return
        now = self._clock()
        with self._lock:
            sent = self._sent.setdefault(subject, deque())
            while sent and sent[0] <= now - WINDOW:
                sent.popleft()
            if len(sent) >= self.per_minute:
                wait = max(1, math.ceil(sent[0] + WINDOW - now))
                raise LimitError(f"You have sent {len(sent)} messages in the last minute, your limit. "
                                 f"Try again in {wait} s.", retry_after=wait)
            sent.append(now)
            self._forget_idle(now)

    def _forget_idle(self, now: float) -> None:
        """Drops users with nothing in the window, so the table does not grow with every user ever seen."""
        if len(self._sent) > 1000:
            for subject in [s for s, times in self._sent.items() if not times or times[-1] <= now - WINDOW]:
                del self._sent[subject]
