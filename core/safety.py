"""Safety policies: decide whether a prompt may reach the model.

A policy is any object with `is_safe(text) -> bool`. The default is the seed's blocked-words rule;
with a key set, the provider's moderation endpoint can be layered on top of it.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Protocol

from core.llm import ChatModel

REFUSAL = (
    "I can't help with that request: it was flagged by this chat's safety policy. "
    "Please rephrase and try again."
)


class SafetyPolicy(Protocol):
    def is_safe(self, text: str) -> bool: ...


class BlockedWordsPolicy:
    """Unsafe when any blocked word appears as a whole word, ignoring case."""

    def __init__(self, words: Iterable[str] = ("unsafe",)):
        self.words = tuple(w.lower() for w in words if w)
        alternatives = "|".join(re.escape(w) for w in self.words)
        self._pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE) if self.words else None

    def is_safe(self, text: str) -> bool:
        return self._pattern is None or self._pattern.search(text) is None


class ModerationPolicy:
    """Asks the model provider's moderation endpoint, after a cheaper local policy has passed."""

    def __init__(self, model: ChatModel, first: SafetyPolicy | None = None):
        self.model = model
        self.first = first

    def is_safe(self, text: str) -> bool:
        if self.first is not None and not self.first.is_safe(text):
            return False
        return not self.model.moderate(text)
