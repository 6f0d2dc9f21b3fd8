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


class InputError(ValueError):
    """The user's input cannot be used as it is; the message says why."""
