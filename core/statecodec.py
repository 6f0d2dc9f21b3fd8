"""Turns a serialized Burr state into the rows of one snapshot, storing only what changed.

Pure functions, no database: `encode` compares the new state with the previous snapshot of the
same branch and returns a manifest plus the new value/list-item rows; `decode` rebuilds the state
from a manifest and the rows it points to. Loading is O(size of that state), never a replay.
"""
from __future__ import annotations

import dataclasses
import json
import zlib
from collections.abc import Callable, Mapping
from typing import Any

INLINE_LIMIT = 128  # JSON bytes; smaller values live inside the manifest itself
COMPRESS_FROM = 200  # JSON bytes; larger blobs are zlib-compressed when that saves space


@dataclasses.dataclass
class Manifest:
    """Where each key of one snapshot's state lives."""

    inline: dict[str, Any] = dataclasses.field(default_factory=dict)
    values: dict[str, int] = dataclasses.field(default_factory=dict)  # key -> sequence_id of its row
    lists: dict[str, list[int]] = dataclasses.field(default_factory=dict)  # key -> [generation, length]

    def to_json(self) -> str:
        return json.dumps({"i": self.inline, "v": self.values, "l": self.lists}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "Manifest":
        raw = json.loads(text)
        return cls(inline=raw["i"], values=raw["v"], lists=raw["l"])


@dataclasses.dataclass
class EncodedSnapshot:
    manifest: Manifest
    values: list[tuple[str, bytes]]  # (key, data) rows to write at this sequence_id
    items: list[tuple[str, int, int, bytes]]  # (key, generation, idx, data)

    @property
    def stored_bytes(self) -> int:
        return len(self.manifest.to_json()) + sum(len(d) for _, d in self.values) + sum(
            len(d) for *_, d in self.items
        )


def pack(value: Any) -> bytes:
    raw = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(raw) >= COMPRESS_FROM:
        packed = zlib.compress(raw, 6)
        if len(packed) < len(raw):
            return b"z" + packed
    return b"j" + raw


def unpack(data: bytes) -> Any:
    data = bytes(data)
    body = zlib.decompress(data[1:]) if data[:1] == b"z" else data[1:]
    return json.loads(body)


def encode(
    state: Mapping[str, Any], sequence_id: int, previous: Mapping[str, Any] | None, prev_manifest: Manifest | None
) -> EncodedSnapshot:
    """Encodes `state` (already serialized) against the previous snapshot of the same branch."""
    previous = previous or {}
    prev_manifest = prev_manifest or Manifest()
    out = EncodedSnapshot(Manifest(), [], [])
    for key, value in state.items():
        if isinstance(value, list):
            _encode_list(out, key, value, sequence_id, previous.get(key), prev_manifest.lists.get(key))
        elif len(json.dumps(value, separators=(",", ":"), ensure_ascii=False)) <= INLINE_LIMIT:
            out.manifest.inline[key] = value
        elif key in prev_manifest.values and previous.get(key) == value:
            out.manifest.values[key] = prev_manifest.values[key]
        else:
            out.values.append((key, pack(value)))
            out.manifest.values[key] = sequence_id
    return out


def _encode_list(
    out: EncodedSnapshot, key: str, value: list, sequence_id: int, previous: Any, prev_entry: list[int] | None
) -> None:
    """Appends only new items when the old list is a prefix of the new one; else a new generation."""
    if prev_entry is not None and isinstance(previous, list) and value[: len(previous)] == previous:
        generation, start = prev_entry[0], len(previous)
    else:
        generation, start = sequence_id, 0
    for idx in range(start, len(value)):
        out.items.append((key, generation, idx, pack(value[idx])))
    out.manifest.lists[key] = [generation, len(value)]


def decode(
    manifest: Manifest,
    fetch_values: Callable[[dict[str, int]], dict[str, bytes]],
    fetch_items: Callable[[str, int, int], list[bytes]],
) -> dict[str, Any]:
    """Rebuilds the serialized state; the fetchers read exactly the rows the manifest names."""
    state: dict[str, Any] = dict(manifest.inline)
    if manifest.values:
        for key, data in fetch_values(manifest.values).items():
            state[key] = unpack(data)
    for key, (generation, length) in manifest.lists.items():
        rows = fetch_items(key, generation, length) if length else []
        if len(rows) != length:
            raise ValueError(f"snapshot list {key!r} expects {length} items, found {len(rows)}")
        state[key] = [unpack(r) for r in rows]
    missing = set(manifest.values) - set(state)
    if missing:
        raise ValueError(f"snapshot values missing from the database: {sorted(missing)}")
    return state
