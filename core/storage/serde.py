"""Burr state (de)serialization that costs O(what changed) per save instead of O(whole state).

`State.serialize()` walks every item of every list through Burr's serde on every save: 5 ms for a
2,000-message chat, the largest cost of a save. `serialize_state` skips that walk for lists of
plain JSON without numbers or booleans (chat messages: strings only), whose serialized form is the
items themselves, and keeps a frozen copy of those items (frozen.py) for the next save. When the
next state's list starts with items equal to that copy, only the new items are copied.

The check is Python `==` against the frozen copy (it runs in C, and is by value: an item changed
in place since the last save no longer equals its copy, so the list is serialized again). `==`
cannot tell 1, 1.0 and True apart, hence the number-free condition; other lists, and lists with a
field-level serde (Burr's `register_field_serde`), go through Burr's full serialization. Known
limit: the key order of a dict inside an unchanged item is the one of the earlier save (dicts
compare equal in any order).

`deserialize_state` skips Burr's per-item deserialize walk for keys whose stored JSON holds no
serde marker (the walk would return an equal copy), which is most of the time of a load.
"""
from __future__ import annotations

import base64
from typing import Any

from burr.core import State, serde
from burr.core.state import FIELD_SERIALIZATION

from core.storage.codec import BYTES_KEY
from core.storage.frozen import freeze_items


class Remembered:
    """What a save keeps for the next one: the serialized state (number-free lists as private,
    frozen copies of their items) and which lists are number-free."""

    __slots__ = ("serialized", "number_free")

    def __init__(self, serialized: dict[str, Any], number_free: set[str]):
        self.serialized, self.number_free = serialized, number_free


def is_number_free(value: Any) -> bool:
    """True when this JSON-able value holds only strings, None, lists and string-keyed dicts."""
    if value is None or isinstance(value, str):
        return True
    if isinstance(value, list):
        return all(is_number_free(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_number_free(v) for k, v in value.items())
    return False


def _shortcut_applies(key: str, value: Any) -> bool:
    return type(value) is list and key not in FIELD_SERIALIZATION


def _appended(key: str, value: Any, previous: Remembered) -> bool:
    """The list only grew since the previous save: its old items equal (by value) the frozen copy."""
    old = previous.serialized.get(key)
    return (key in previous.number_free and _shortcut_applies(key, value) and type(old) is list
            and len(old) <= len(value) and value[: len(old)] == old)


def serialize_state(state: State, previous: Remembered | None = None) -> tuple[dict[str, Any], Remembered]:
    """Equals `state.serialize()`; also returns what to pass as `previous` to the next call."""
    values = state.get_all()
    previous = previous or Remembered({}, set())
    serialized: dict[str, Any] = {}
    number_free: set[str] = set()
    full: dict[str, Any] = {}
    for key, value in values.items():
        if _appended(key, value, previous) and is_number_free(new := value[len(previous.serialized[key]):]):
            serialized[key] = previous.serialized[key] + freeze_items(new)
            number_free.add(key)
        elif _shortcut_applies(key, value) and is_number_free(value):
            serialized[key] = freeze_items(value)  # plain JSON: serialized, it is itself
            number_free.add(key)
        else:
            full[key] = value
    if full:
        serialized.update(State(full).serialize())
    ordered = {key: serialized[key] for key in values}  # same key order as state.serialize()
    return ordered, Remembered(ordered, number_free)


def restore_bytes(value: Any) -> Any:
    """The stored JSON with raw bytes back where codec.bytes_as_json stored them as base64.

    Burr's serde turns raw bytes in a state into their repr; only a registered serializer (Burr's
    pickle serde) puts bytes into its `{"__burr_serde__": ..., ...}` object. So only the direct
    values of such objects are restored: user data that happens to use the marker key stays as it is.
    """
    if isinstance(value, list):
        return [restore_bytes(item) for item in value]
    if not isinstance(value, dict):
        return value
    serde_object = serde.KEY in value
    return {key: _as_bytes(item) if serde_object and _is_bytes_marker(item) else restore_bytes(item)
            for key, item in value.items()}


def _is_bytes_marker(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(BYTES_KEY), str)


def _as_bytes(marker: dict[str, str]) -> Any:
    try:
        return base64.b64decode(marker[BYTES_KEY], validate=True)
    except ValueError:  # not ours after all (binascii.Error is a ValueError)
        return marker


def deserialize_state(serialized: dict[str, Any], needs_serde: set[str]) -> State:
    """Equals `State.deserialize(serialized)` when keys outside `needs_serde` hold plain JSON."""
    plain = {k: v for k, v in serialized.items() if k not in needs_serde and k not in FIELD_SERIALIZATION}
    walked = State.deserialize({k: restore_bytes(v) for k, v in serialized.items() if k not in plain}).get_all()
    return State({key: plain[key] if key in plain else walked[key] for key in serialized})
