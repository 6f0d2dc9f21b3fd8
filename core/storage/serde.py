"""Burr state (de)serialization that costs O(what changed) per save instead of O(whole state).

`State.serialize()` walks every item of every list through Burr's serde on every save: 5 ms for a
2,000-message chat, the largest cost of a save. `serialize_state` reuses the previous save's
serialized list items when the list only grew, and serializes just the new items.

"Only grew" is checked with Python `==` over the old items (it runs in C). `==` cannot tell
1, 1.0 and True apart, so the shortcut is taken only for lists whose items hold no numbers or
booleans (chat messages: strings only); other lists, and lists with a field-level serde (Burr's
`register_field_serde`), go through Burr's full serialization. Known limit: the key order of a
dict inside an unchanged item is the one of the earlier save (dicts compare equal in any order).

`deserialize_state` skips Burr's per-item deserialize walk for keys whose stored JSON holds no
serde marker (the walk would return an equal copy), which is most of the time of a load.
"""
from __future__ import annotations

from typing import Any

from burr.core import State, serde
from burr.core.state import FIELD_SERIALIZATION


class Remembered:
    """What a save keeps for the next one: raw values (lists copied, so an in-place append after
    saving still counts as a change), their serialized form, and which lists are number-free."""

    __slots__ = ("raw", "serialized", "number_free")

    def __init__(self, raw: dict[str, Any], serialized: dict[str, Any], number_free: set[str]):
        self.raw, self.serialized, self.number_free = raw, serialized, number_free


def is_number_free(value: Any) -> bool:
    """True when this JSON-able value holds only strings, None, lists and string-keyed dicts."""
    if value is None or isinstance(value, str):
        return True
    if isinstance(value, list):
        return all(is_number_free(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_number_free(v) for k, v in value.items())
    return False


def _appended(key: str, value: Any, previous: Remembered) -> bool:
    """The list only grew since the previous save, and `==` on its old items is exact."""
    old = previous.raw.get(key)
    return (type(value) is list and type(old) is list and key in previous.number_free
            and key not in FIELD_SERIALIZATION and len(old) <= len(value) and value[: len(old)] == old)


def serialize_state(state: State, previous: Remembered | None = None) -> tuple[dict[str, Any], Remembered]:
    """Equals `state.serialize()`; also returns what to pass as `previous` to the next call."""
    values = state.get_all()
    previous = previous or Remembered({}, {}, set())
    serialized: dict[str, Any] = {}
    number_free: set[str] = set()
    full: dict[str, Any] = {}
    for key, value in values.items():
        if _appended(key, value, previous):
            new_items = [serde.serialize(item) for item in value[len(previous.raw[key]):]]
            serialized[key] = previous.serialized[key] + new_items
            if is_number_free(new_items):
                number_free.add(key)
        else:
            full[key] = value
    if full:
        serialized.update(State(full).serialize())
        number_free.update(k for k, v in full.items() if type(v) is list and is_number_free(serialized[k]))
    ordered = {key: serialized[key] for key in values}  # same key order as state.serialize()
    raw = {key: list(value) if type(value) is list else value for key, value in values.items()}
    return ordered, Remembered(raw, ordered, number_free)


def deserialize_state(serialized: dict[str, Any], needs_serde: set[str]) -> State:
    """Equals `State.deserialize(serialized)` when keys outside `needs_serde` hold plain JSON."""
    plain = {k: v for k, v in serialized.items() if k not in needs_serde and k not in FIELD_SERIALIZATION}
    walked = State.deserialize({k: v for k, v in serialized.items() if k not in plain}).get_all()
    return State({key: plain[key] if key in plain else walked[key] for key in serialized})
