"""Per-reply facts: which model answered, how fast, how many tokens, and why the reply ended.

They are measured while a reply streams (core/actions.py, with what the model reports through a
`StreamReport`), saved as plain keys of the assistant message and never sent to the model
(model_messages sends role and content only). A fact the server did not report is absent, never zero.

Numbers are saved as decimal strings: a history of strings only is one the storage can check
for changes by value in C on every save (core/storage/serde.py); a number in any message would
send the whole history through Burr's per-item serialization on every save instead. `facts_of`
gives them back as numbers.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

FINISH_STOP, FINISH_LENGTH, FINISH_STOPPED, FINISH_ERROR = "stop", "length", "stopped", "error"
FACT_KEYS = ("model", "finish_reason", "ttft_ms", "total_ms", "tokens_in", "tokens_out")
NUMBERS = frozenset({"ttft_ms", "total_ms", "tokens_in", "tokens_out"})
_FINISH_TEXT = {FINISH_STOP: "complete", FINISH_LENGTH: "cut at the length limit",
                FINISH_STOPPED: "stopped by you", FINISH_ERROR: "failed"}


@dataclasses.dataclass
class StreamReport:
    """What a model tells about a reply besides its text, filled in while it streams."""

    model: str | None = None
    finish_reason: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    on_retry: Callable[[str], None] | None = None  # told, in words, when the client asks the server again
    attempts: int = 0  # requests sent for this reply (the client's automatic retries included)
    last_status: int | None = None  # HTTP status of the last answer that was not a success


class ReplyClock:
    """Times one reply: time to the first piece and in total, in whole milliseconds."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.first: float | None = None

    def piece(self) -> None:
        if self.first is None:
            self.first = time.monotonic()

    def facts(self, report: StreamReport, finish_reason: str) -> dict[str, str]:
        """The message keys for a reply that ended now, as strings; unknown facts are left out."""
        found = {"model": report.model, "finish_reason": finish_reason,
                 "ttft_ms": _ms(self.first - self.started) if self.first is not None else None,
                 "total_ms": _ms(time.monotonic() - self.started),
                 "tokens_in": report.tokens_in, "tokens_out": report.tokens_out}
        return {key: str(value) for key, value in found.items() if value is not None}


def facts_of(message: dict[str, Any]) -> dict[str, Any]:
    """The facts saved with a message, numbers as numbers (empty for a user message or one saved
    before facts existed)."""
    return {key: _number(message[key]) if key in NUMBERS else message[key] for key in FACT_KEYS if key in message}


def without_facts(message: dict[str, Any]) -> dict[str, Any]:
    """A message without its facts: what two runs of the same conversation have in common."""
    return {key: value for key, value in message.items() if key not in FACT_KEYS}


def describe(facts: dict[str, Any]) -> str:
    """One discreet line: "gpt-4o-mini · first words 0.4 s · 2.1 s in all · 120 → 45 tokens · complete"."""
    parts = [str(facts["model"])] if facts.get("model") else []
    if "ttft_ms" in facts:
        parts.append(f"first words {_seconds(facts['ttft_ms'])}")
    if "total_ms" in facts:
        parts.append(f"{_seconds(facts['total_ms'])} in all")
    if "tokens_in" in facts or "tokens_out" in facts:
        parts.append(f"{facts.get('tokens_in', '?')} → {facts.get('tokens_out', '?')} tokens")
    if facts.get("finish_reason"):
        parts.append(_FINISH_TEXT.get(facts["finish_reason"], str(facts["finish_reason"])))
    return " · ".join(parts)


def _number(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _seconds(ms: Any) -> str:
    try:
        return f"{float(ms) / 1000:.1f} s"
    except (TypeError, ValueError):
        return "?"
