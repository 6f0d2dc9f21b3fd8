"""Error types every layer can raise and catch: storage, the chat service, the pages and the API.

They carry a message written for the person using Burrow; the cause (a driver error, a traceback)
is chained with `raise ... from`, and logged where the error is turned into a page or a response.
"""
from __future__ import annotations


class BurrowError(RuntimeError):
    """Base of Burrow's own errors: the message is safe to show (no secrets, no stack)."""


class StorageError(BurrowError):
    """The database could not be read or written; the message says what to check."""


class SnapshotConflictError(StorageError):
    """Another writer already saved this step of this branch."""


class SchemaVersionError(StorageError):
    """The database was written by a newer (or unknown) Burrow release; this one must not touch it."""


class UnreadableSnapshotError(StorageError):
    """A snapshot's rows are missing (deleted while being read) or damaged."""


class LLMError(BurrowError):
    """A model call failed. `kind` is machine-readable ("timeout", "rate_limit", ...); str(err) is for the user."""

    RETRYABLE = frozenset({"timeout", "rate_limit", "server", "connection", "stream_broken", "unknown"})

    def __init__(self, kind: str, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after
        self.facts: dict | None = None  # the failed reply's facts (core/facts.py), set by the action

    @property
    def retryable(self) -> bool:
        return self.kind in self.RETRYABLE


class InputError(ValueError):
    """The user's input cannot be used as it is; the message says why."""


class ReadOnlyError(InputError):
    """An admin asked to change a conversation they may only read (another user's)."""


class BusyError(BurrowError):
    """Too much is running right now (this process's run limit, or it is shutting down); try again."""


class LimitError(BusyError):
    """One user is over their own limit (replies at once, messages per minute); others are not affected."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after
