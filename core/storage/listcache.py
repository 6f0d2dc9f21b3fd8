"""The list items this process has already read, so loading a conversation again reads only what is new.

The chat app rebuilds a conversation's Burr application from the database on every turn (that is
what keeps several servers consistent), so the same long `chat_history` is loaded again and again.
Items [0, L) of one generation of one branch's list never change once committed (see
codec.py: a generation only grows, a rewrite starts a new generation, and a branch saves
each sequence id once). So what a load decoded stays true, and the next load of that list fetches
only the chunks past the cached prefix: a few small rows instead of the whole history.

Entries are keyed by the branch row's id *and* its creation time, so a deleted conversation whose
row id the database hands out again can never match a stale entry. The cache holds at most
`max_bytes` of JSON text (roughly half the memory the decoded items take), least recently used
entries leave first. Items are shared with the loaded states, so they are frozen (frozen.py): an
in-place change raises instead of silently changing what the next load returns.
"""
from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from datetime import datetime
from typing import Any

DEFAULT_MAX_BYTES = 64 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Branch:
    """What identifies one branch's rows for as long as they exist."""

    partition_key: str
    app_id: str
    row_id: int
    created_at: datetime


@dataclasses.dataclass(frozen=True)
class CachedList:
    items: list[Any]  # items [0, len(items)) of the generation; never handed out, only copies of it
    needs_serde: bool  # some item holds a Burr serde marker
    size: int  # JSON bytes read to build it


class ListPrefixCache:
    """Thread-safe LRU of decoded list prefixes, bounded by the JSON text they came from."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[Branch, str, int], CachedList] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, branch: Branch, key: str, generation: int) -> CachedList | None:
        with self._lock:
            entry = self._entries.get((branch, key, generation))
            if entry is not None:
                self._entries.move_to_end((branch, key, generation))
            return entry

    def put(self, branch: Branch, key: str, generation: int, items: list[Any], needs_serde: bool, size: int) -> None:
        """Keeps a copy of `items` unless a longer prefix of the same list is already cached."""
        if size > self.max_bytes:
            return
        entry_key = (branch, key, generation)
        with self._lock:
            old = self._entries.get(entry_key)
            if old is not None and len(old.items) >= len(items):
                return
            self._size += size - (old.size if old else 0)
            self._entries[entry_key] = CachedList(list(items), needs_serde, size)
            self._entries.move_to_end(entry_key)
            while self._size > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._size -= evicted.size

    def forget(self, partition_key: str, app_id: str | None = None) -> None:
        """Drops a conversation's entries (all branches, or one), e.g. after it is deleted."""
        with self._lock:
            for entry_key in [k for k in self._entries if k[0].partition_key == partition_key
                              and app_id in (None, k[0].app_id)]:
                self._size -= self._entries.pop(entry_key).size

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._size = 0

    @property
    def size(self) -> int:
        """JSON bytes held, for tests and benchmarks."""
        return self._size
