"""Turns a serialized Burr state into the rows of one snapshot, storing only what changed.

Pure functions, no database: `encode` compares the new state with the previous snapshot of the
same branch and returns a manifest plus the new rows; `decode` rebuilds the state from a manifest
and the rows it points to. Loading is O(size of that state), never a replay.

Lists (the chat history) are stored as *chunks*: each save writes the items it appended as one
small chunk; once CHUNK_ITEMS items are pending after the last sealed chunk, they are rewritten as
one sealed chunk and the small ones deleted. Earlier snapshots still decode, because a list of a
generation only ever grows: a snapshot of length L reads the chunks starting below L and cuts at L.
So storage stays linear and a load reads ~L/CHUNK_ITEMS rows instead of L.

Stored blobs start with one codec byte: b"j" plain UTF-8 JSON, b"z" zlib (values), b"4" an LZ4
block (list chunks). LZ4 decompresses at gigabytes per second, so a compressed chunk costs less to
decompress than the bytes it saves cost to move (PostgreSQL sends half as much; zlib would cost
~4 ms per MB here, more than the transfer). List chunks are parsed with orjson (twice as fast as
the json module) when their manifest entry says that is exact (see Manifest), else with json.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import operator
import re
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import lz4.block
import orjson

from core.errors import UnreadableSnapshotError
from core.storage.frozen import FrozenDict, FrozenList, freeze_items

INLINE_LIMIT = 128  # JSON bytes; smaller values live inside the manifest itself
COMPRESS_FROM = 200  # JSON bytes; bigger non-list values are zlib-compressed when that saves space
CHUNK_ITEMS = 64  # appended list items are merged into one row once this many are pending
SERDE_MARKER = '"__burr_serde__"'  # Burr's serde key; JSON without it deserializes to itself
BYTES_KEY = "__burrow_bytes__"  # raw bytes in a state, stored as base64 (see bytes_as_json)
_SERDE_MARKER_BYTES = SERDE_MARKER.encode()
_BYTES_MARKER = f'"{BYTES_KEY}"'.encode()
# Flags of a list in the manifest. orjson reads integers beyond 64 bits as floats, so any run of 19
# digits (in a number or, rarely, in a text) sends the list to the exact json module instead.
# ALL_FLAT_DICTS: every item is a dict of scalars (a chat message), so a load freezes each with one
# C-level copy (see frozen.py); entries written before this flag existed take the general path.
HAS_SERDE_MARKER, HAS_LONG_DIGITS, ALL_FLAT_DICTS = 1, 2, 4
_LONG_DIGITS = re.compile(rb"[0-9]{19}")
_DICTS = frozenset({dict, FrozenDict})
_NESTING = frozenset({dict, list, FrozenDict, FrozenList})


def bytes_as_json(value: Any) -> dict[str, str]:
    """JSON for raw bytes inside a serialized state (Burr's pickle serde makes them): a marked base64
    object, which loads turn back into bytes (serde.restore_bytes)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {BYTES_KEY: base64.b64encode(bytes(value)).decode("ascii")}
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> bytes:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=bytes_as_json)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (broken Unicode) have no UTF-8: \u escapes keep them exactly
        return json.dumps(value, separators=(",", ":"), default=bytes_as_json).encode("ascii")


@dataclasses.dataclass
class Manifest:
    """Where each key of one snapshot's state lives, in the state's own key order.

    Stored as one JSON object in key order: {key: ["i", value] | ["v", sequence_id of its row]
    | ["l", generation, length, sealed, flags]}; a list's items [0, sealed) are in sealed chunks, and
    `flags` says whether any of its items holds a Burr serde marker or a long digit run, and whether
    all are flat dicts, so a load need not search megabytes of text for them (entries written before
    flags existed lack them: then
    the text is searched for markers and parsed with the json module).
    """

    inline: dict[str, Any] = dataclasses.field(default_factory=dict)
    values: dict[str, int] = dataclasses.field(default_factory=dict)  # key -> sequence_id of its row
    lists: dict[str, list[int]] = dataclasses.field(default_factory=dict)  # key -> [generation, length, sealed, flags?]
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
        return json.dumps(where, separators=(",", ":"), default=bytes_as_json)

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


def list_length(manifest_json: str, key: str) -> int | None:
    """How many items the list `key` has in a snapshot, from its manifest alone (None: not a list there)."""
    entry = orjson.loads(manifest_json).get(key)
    return entry[2] if entry and entry[0] == "l" else None


@dataclasses.dataclass(frozen=True)
class Chunk:
    """Items [start, start + count) of one generation of a list, as JSON array text."""

    key: str
    generation: int
    start: int
    count: int
    data: bytes  # codec byte + JSON array (see pack_items)


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
            len(c.data) for c in self.chunks
        )


def pack(value: Any) -> bytes:
    raw = dumps(value)
    if len(raw) >= COMPRESS_FROM:
        packed = zlib.compress(raw, 6)
        if len(packed) < len(raw):
            return b"z" + packed
    return b"j" + raw


def pack_items(raw: bytes, sealed: bool = False) -> bytes:
    """A list chunk's JSON, LZ4-compressed when that saves space. A sealed chunk is written once per
    CHUNK_ITEMS items and read by every later load, so it gets LZ4's high-compression mode (10%
    smaller, ~0.4 ms per 40 KB to write, as fast to decompress)."""
    packed = lz4.block.compress(raw, mode="high_compression", compression=3) if sealed else lz4.block.compress(raw)
    return b"4" + packed if len(packed) < len(raw) else b"j" + raw


def unpack_raw(data: bytes) -> bytes:
    """The JSON bytes of any stored blob (value or list chunk), whatever its codec byte."""
    data = bytes(data)
    codec, body = data[:1], memoryview(data)[1:]  # no copy of a compressed body before it is unpacked
    if codec == b"4":
        return lz4.block.decompress(body)
    if codec == b"z":
        return zlib.decompress(body)
    if codec == b"j":
        return data[1:]
    raise UnreadableSnapshotError(f"unknown storage codec {codec!r}")


def unpack(data: bytes) -> Any:
    return json.loads(unpack_raw(data))


def list_flags(raw: bytes) -> int:
    """The manifest flags that JSON text `raw` sets (see Manifest)."""
    return (HAS_SERDE_MARKER if has_marker(raw) else 0) | (HAS_LONG_DIGITS if _LONG_DIGITS.search(raw) else 0)


def has_marker(raw: bytes) -> bool:
    """JSON text that does not load as itself: Burr serde objects, or bytes stored as base64."""
    return _SERDE_MARKER_BYTES in raw or _BYTES_MARKER in raw


def all_flat_dicts(items: list[Any]) -> bool:
    """Every item is a dict whose values are scalars."""
    return all(type(item) in _DICTS and _NESTING.isdisjoint(map(type, item.values())) for item in items)


def _parse_fast(raw: bytes) -> Any:
    """orjson, for JSON without long digit runs; the json module for what orjson refuses (NaN, lone surrogates)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


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
        flags = prev_entry[3] if len(prev_entry) > 3 else list_flags(dumps(previous))
    else:
        generation, start, sealed, flags = sequence_id, 0, 0, ALL_FLAT_DICTS  # no items yet: all flat
    if len(value) > start and not all_flat_dicts(value[start:]):  # only the new items are looked at
        flags &= ~ALL_FLAT_DICTS
    if len(value) - sealed >= CHUNK_ITEMS:
        if start > sealed:
            out.merged.append((key, generation, sealed, start))
        start = sealed
        sealed = len(value)
    if len(value) > start:
        data = dumps(value[start:])
        out.chunks.append(Chunk(key, generation, start, len(value) - start, pack_items(data, sealed=start < sealed)))
        flags |= list_flags(data)
    out.manifest.lists[key] = [generation, len(value), sealed, flags]


def decode(
    manifest: Manifest,
    fetch_values: Callable[[dict[str, int]], dict[str, bytes]],
    read_list: Callable[[str, int, int, int | None], tuple[list, bool]],
) -> tuple[dict[str, Any], set[str]]:
    """Rebuilds the serialized state and names the keys whose JSON holds Burr serde markers.

    `fetch_values` reads the value rows the manifest points to; `read_list(key, generation, length,
    flags)` returns items [0, length) of a list's generation and whether any holds a serde marker
    (built with `assemble_list`; `flags` is None where the manifest predates them). Keys outside
    the returned set need no `serde.deserialize` walk (a big saving on long lists).
    """
    state: dict[str, Any] = dict(manifest.inline)
    marked = set(manifest.inline)  # small values: cheap to deserialize normally
    if manifest.values:
        for key, data in fetch_values(manifest.values).items():
            raw = unpack_raw(data)
            state[key] = json.loads(raw)
            if has_marker(raw):
                marked.add(key)
    missing = set(manifest.values) - set(state)
    if missing:
        raise UnreadableSnapshotError(f"snapshot values missing from the database: {sorted(missing)}")
    for key, (generation, length, _sealed, *flags) in manifest.lists.items():
        state[key], needs_serde = read_list(key, generation, length, flags[0] if flags else None)
        if needs_serde:
            marked.add(key)
    return {key: state[key] for key in manifest.order}, marked


def assemble_list(
    key: str, prefix: list, prefix_serde: bool, chunks: list[tuple[int, int, bytes]], length: int,
    flags: int | None = None,
) -> tuple[list, bool, int]:
    """Items [0, length), frozen (see frozen.py): a known prefix of them, then the chunks (start,
    count, data) that go past it; whether they hold a serde marker (from `flags` when the manifest
    has them, else searched for); and the JSON bytes the chunks held.

    The chunks are ordered by start and contiguous; the first may begin inside the prefix (a merge
    rewrote small chunks into one), and then only its items past the prefix are taken. Each chunk is
    parsed on its own: joining them first would allocate (and page-fault) one more megabyte-sized
    buffer per load of a long chat, which costs more than the parsing.
    """
    items = prefix[:length]
    needs_serde = prefix_serde if flags is None else bool(flags & HAS_SERDE_MARKER)
    parse = _parse_fast if flags is not None and not flags & HAS_LONG_DIGITS else json.loads
    flat = flags is not None and bool(flags & ALL_FLAT_DICTS)
    json_bytes = 0
    for start, _count, data in chunks:
        if start > len(items):
            raise UnreadableSnapshotError(f"snapshot list {key!r}: chunk at {start}, expected {len(items)}")
        raw = unpack_raw(data)
        json_bytes += len(raw)
        parsed = parse(raw)
        # Only items up to `length` belong to this snapshot (a later merge may have sealed more into
        # this chunk), and only they are covered by this manifest's flags.
        new = parsed[max(0, len(items) - start): length - start]
        items.extend(map(FrozenDict, new) if flat else freeze_items(new))  # read-only: the cache shares them
        if len(items) >= length:
            break
        if flags is None:
            needs_serde = needs_serde or has_marker(raw)
    if len(items) < length:
        raise UnreadableSnapshotError(f"snapshot list {key!r} expects {length} items, found {len(items)}")
    del items[length:]
    return items, needs_serde, json_bytes
