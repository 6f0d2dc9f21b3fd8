"""A timing proxy for any Burr persister: records how long each `save` takes, changes nothing else."""
from __future__ import annotations

import time
from typing import Any

from burr.core.persistence import BaseStatePersister


class TimedPersister(BaseStatePersister):
    """Wraps a persister so the Application's saves are timed (seconds, one entry per save)."""

    def __init__(self, inner: BaseStatePersister):
        self.inner = inner
        self.save_seconds: list[float] = []

    def initialize(self) -> None:
        self.inner.initialize()

    def is_initialized(self) -> bool:
        return self.inner.is_initialized()

    def list_app_ids(self, partition_key: str, **kwargs: Any) -> list[str]:
        return self.inner.list_app_ids(partition_key, **kwargs)

    def load(self, partition_key: str, app_id: str | None, sequence_id: int | None = None, **kwargs: Any):
        return self.inner.load(partition_key, app_id, sequence_id, **kwargs)

    def save(self, partition_key, app_id, sequence_id, position, state, status, **kwargs: Any) -> None:  # noqa: ANN001
        start = time.perf_counter()
        self.inner.save(partition_key, app_id, sequence_id, position, state, status, **kwargs)
        self.save_seconds.append(time.perf_counter() - start)


def p99_ms(samples: list[float]) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] * 1000
