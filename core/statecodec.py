"""Turns a serialized Burr state into the rows of one snapshot, storing only what changed.

Pure functions, no database: `encode` compares the new state with the previous snapshot of the
same branch and returns a manifest plus the new rows; `decode` rebuilds the state from a manifest
and the rows it points to. Loading is O(size of that state), never a replay.

Lists (the chat history) are stored as *chunks*: each save writes the items it appended as one
small chunk; once CHUNK_ITEMS items are pending after the last sealed chunk, they are rewritten as
one sealed chunk and the small ones deleted. Earlier snapshots still decode, because a list of a
generation only ever grows: a snapshot of length L reads the chunks starting below L and cuts at L.
So storage stays linear and a load reads ~L/CHUNK_ITEMS rows instead of L.
"""
from __future__ import annotations

import dataclasses
import json
import operator
import zlib
from collections.abc import Callable, Mapping
from typing import Any

INLINE_LIMIT = 128  # JSON bytes; smaller values live inside the manifest itself
COMPRESS_FROM = 200  # JSON bytes; bigger non-list values are zlib-compressed when that saves space
CHUNK_ITEMS = 64  # appended list items are merged into one row once this many are pending
# List chunks stay plain JSON text: zlib costs ~8 µs per decompress plus ~4 ms per MB, which would make
# loading a long chat slower than reading one big JSON row (PostgreSQL compresses big text by itself,
# and text travels as is where bytea is hex-encoded); values are few per state, so they compress.
SERDE_MARKER = '"__burr_serde__"'  # Burr's serde key; JSON without it deserializes to itself
_SERDE_MARKER_BYTES = SERDE_MARKER.encode()


class MissingRowsError(ValueError):
    """A manifest points at rows that are not there (deleted while being read, or a damaged database)."""


def dumps(value: Any) -> bytes:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (broken Unicode) have no UTF-8: \u escapes keep them exactly
        return json.dumps(value, separators=(",", ":")).encode("ascii")


@dataclasses.dataclass
class Manifest:
    """Where each key of one snapshot's state lives, in the state's own key order.

    Stored as one JSON object in key order: {key: ["i", value] | ["v", sequence_id of its row]
    | ["l", generation, length, sealed, marked]}; a list's items [0, sealed) are in sealed chunks, and
    `marked` (1/0) says whether any of its items holds a Burr serde marker, so a load need not search
    megabytes of text for one (manifests written before it was added lack it: then the text is searched).
    """

    inline: dict[str, Any] = dataclasses.field(default_factory=dict)
    values: dict[str, int] = dataclasses.field(default_factory=dict)  # key -> sequence_id of its row
    lists: dict[str, list[int]] = dataclasses.field(default_factory=dict)  # key -> [generation, length, sealed, marked?]
    order: list[str] = dataclasses.field(default_factory=list)

    def to_json(self) -> str:
        where: dict[str, list] = {}
        for key in self.order:
            if key in self.inline:
                where[key] = ["i", self.inline[key]]
            elif key in self.values:
                where[key] = ["v", self.values[key]]
            else:
                where[key] = ["l", *self.lists[key]]
        return json.dumps(where, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "Manifest":
        manifest = cls()
        for key, (kind, *rest) in json.loads(text).items():
            manifest.order.append(key)
            if kind == "i":
                manifest.inline[key] = rest[0]
            elif kind == "v":
                manifest.values[key] = rest[0]
            else:
                manifest.lists[key] = rest
        return manifest


@dataclasses.dataclass(frozen=True)
class Chunk:
    """Items [start, start + count) of one generation of a list, as JSON array text."""

    key: str
    generation: int
    start: int
    count: int
    data: str
    size: int  # UTF-8 bytes of data


@dataclasses.dataclass
class EncodedSnapshot:
    manifest: Manifest
    values: list[tuple[str, bytes]]  # (key, data) rows to write at this sequence_id
    chunks: list[Chunk]
    merged: list[tuple[str, int, int, int]]  # (key, generation, start, end): delete chunks starting in [start, end)

    @property
    def written_bytes(self) -> int:
        """Payload bytes this snapshot writes (the chunks a merge deletes are not subtracted here)."""
        return len(self.manifest.to_json()) + sum(len(d) for _, d in self.values) + sum(
            c.size for c in self.chunks
        )


def pack(value: Any) -> bytes:
    raw = dumps(value)
    if len(raw) >= COMPRESS_FROM:
        packed = zlib.compress(raw, 6)
        if len(packed) < len(raw):
            return b"z" + packed
    return b"j" + raw


def unpack_raw(data: bytes) -> bytes:
    data = bytes(data)
    return zlib.decompress(data[1:]) if data[:1] == b"z" else data[1:]


def unpack(data: bytes) -> Any:
    return json.loads(unpack_raw(data))


def encode(
    state: Mapping[str, Any], sequence_id: int, previous: Mapping[str, Any] | None, prev_manifest: Manifest | None
) -> EncodedSnapshot:
    """Encodes `state` (already serialized) against the previous snapshot of the same branch."""
    previous = previous or {}
    prev_manifest = prev_manifest or Manifest()
    out = EncodedSnapshot(Manifest(), [], [], [])
    for key, value in state.items():
        out.manifest.order.append(key)
        if isinstance(value, list):
            _encode_list(out, key, value, sequence_id, previous.get(key), prev_manifest.lists.get(key))
            continue
        raw = dumps(value)
        if len(raw) <= INLINE_LIMIT:
            out.manifest.inline[key] = value
        elif key in prev_manifest.values and _same_json(previous.get(key), value, raw):
            out.manifest.values[key] = prev_manifest.values[key]
        else:
            out.values.append((key, pack(value)))
            out.manifest.values[key] = sequence_id
    return out


def _same_json(old: Any, new: Any, new_raw: bytes) -> bool:
    """Equal and serialized identically (so 1 -> 1.0 -> True counts as a change)."""
    return old == new and dumps(old) == new_raw


def _starts_with(value: list, prefix: list) -> bool:
    """`value` begins with exactly the items of `prefix`: the same objects (the persister's cache
    shares them, a C-speed check), or else the same JSON (after a cache miss; == alone would
    take 1, 1.0 and True for one another)."""
    if len(prefix) > len(value):
        return False
    head = value[: len(prefix)]
    return all(map(operator.is_, head, prefix)) or (head == prefix and dumps(head) == dumps(prefix))


def _encode_list(
    out: EncodedSnapshot, key: str, value: list, sequence_id: int, previous: Any, prev_entry: list[int] | None
) -> None:
    """Appended items go into a new small chunk, or with the pending ones into one sealed chunk."""
    appended = prev_entry is not None and isinstance(previous, list) and _starts_with(value, previous)
    if appended:
        generation, start, sealed = prev_entry[0], len(previous), prev_entry[2]
        marked = bool(prev_entry[3]) if len(prev_entry) > 3 else _SERDE_MARKER_BYTES in dumps(previous)
    else:
        generation, start, sealed, marked = sequence_id, 0, 0, False
    if len(value) - sealed >= CHUNK_ITEMS:
        if start > sealed:
            out.merged.append((key, generation, sealed, start))
        start = sealed
        sealed = len(value)
    if len(value) > start:
        data = dumps(value[start:])
        out.chunks.append(Chunk(key, generation, start, len(value) - start, data.decode("utf-8"), len(data)))
        marked = marked or _SERDE_MARKER_BYTES in data
    out.manifest.lists[key] = [generation, len(value), sealed, int(marked)]


def decode(
    manifest: Manifest,
    fetch_values: Callable[[dict[str, int]], dict[str, bytes]],
    read_list: Callable[[str, int, int, bool | None], tuple[list, bool]],
) -> tuple[dict[str, Any], set[str]]:
    """Rebuilds the serialized state and names the keys whose JSON holds Burr serde markers.

    `fetch_values` reads the value rows the manifest points to; `read_list(key, generation, length,
    marked)` returns items [0, length) of a list's generation and whether any holds a serde marker
    (built with `assemble_list`; `marked` is None when the manifest does not say). Keys outside the returned set need no `serde.deserialize` walk (a big
    saving on long lists).
    """
    state: dict[str, Any] = dict(manifest.inline)
    marked = set(manifest.inline)  # small values: cheap to deserialize normally
    if manifest.values:
        for key, data in fetch_values(manifest.values).items():
            raw = unpack_raw(data).decode("utf-8")
            state[key] = json.loads(raw)
            if SERDE_MARKER in raw:
                marked.add(key)
    missing = set(manifest.values) - set(state)
    if missing:
        raise MissingRowsError(f"snapshot values missing from the database: {sorted(missing)}")
    for key, (generation, length, _sealed, *flag) in manifest.lists.items():
        state[key], needs_serde = read_list(key, generation, length, bool(flag[0]) if flag else None)
        if needs_serde:
            marked.add(key)
    return {key: state[key] for key in manifest.order}, marked


def assemble_list(
    key: str, prefix: list, prefix_serde: bool, chunks: list[tuple[int, int, str]], length: int,
    marked: bool | None = None,
) -> tuple[list, bool]:
    """Items [0, length): a known prefix of them, then the chunks (start, count, data) that go past it,
    and whether they hold a serde marker (`marked` when the manifest says, else the text is searched).

    The chunks are ordered by start and contiguous; the first may begin inside the prefix (a merge
    rewrote small chunks into one), and then only its items past the prefix are taken. Each chunk is
    parsed on its own: joining them first would allocate (and page-fault) one more megabyte-sized
    buffer per load of a long chat, which costs more than the parsing.
    """
    items = prefix[:length]
    needs_serde = prefix_serde if marked is None else marked
    for start, _count, data in chunks:
        if start > len(items):
            raise MissingRowsError(f"snapshot list {key!r}: chunk at {start}, expected {len(items)}")
        parsed = json.loads(data)
        items.extend(parsed[len(items) - start:] if start < len(items) else parsed)
        if marked is None:
            needs_serde = needs_serde or SERDE_MARKER in data
    if len(items) < length:
        raise MissingRowsError(f"snapshot list {key!r} expects {length} items, found {len(items)}")
    del items[length:]
    return items, needs_serde
