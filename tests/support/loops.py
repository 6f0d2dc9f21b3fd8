"""Event loops for tests of async code, each on a thread of its own.

Playwright's sync API (the browser tests) keeps an event loop running in the main thread for the
whole session, so `asyncio.run()` there fails with "cannot be called from a running event loop".
A loop on its own thread works whatever the main thread is doing.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """One event loop running on a daemon thread; `run(coro)` waits for the coroutine's result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-event-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        self.run(self.loop.shutdown_asyncgens())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Like `asyncio.run(coro)`, on a fresh loop of its own thread."""
    runner = LoopThread()
    try:
        return runner.run(coro)
    finally:
        runner.close()
