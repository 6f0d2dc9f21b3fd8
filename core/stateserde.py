"""Burr state (de)serialization that costs O(what changed) per save instead of O(whole state).

`State.serialize()` walks every item of every list through Burr's serde on every save: 5 ms for a
2,000-message chat, the largest cost of a save. `serialize_state` reuses the previous save's
serialized list items when the list only grew (the old items compare equal, Python `==`, which
runs in C), and serializes just the new items. Lists with a field-level serde (Burr's
`register_field_serde`) always go through the full path.

`deserialize_state` skips Burr's per-item deserialize walk for keys whose stored JSON holds no
serde marker (the walk would return an equal copy), which is most of the time of a load.
"""
from __future__ import annotations

from typing import Any

from burr.core import State, serde
from burr.core.state import FIELD_SERIALIZATION

# What a save remembers for the next one: the raw values (lists copied, so an in-place append
# after saving still counts as a change) and their serialized form.
Remembered = tuple[dict[str, Any], dict[str, Any]]


def serialize_state(state: State, previous: Remembered | None = None) -> tuple[dict[str, Any], Remembered]:
    """Equals `state.serialize()`; also returns what to pass as `previous` to the next call."""
    values = state.get_all()
    prev_raw, prev_serialized = previous or ({}, {})
    serialized: dict[str, Any] = {}
    full: dict[str, Any] = {}
    for key, value in values.items():
        old = prev_raw.get(key)
        if (type(value) is list and type(old) is list and key not in FIELD_SERIALIZATION
                and key in prev_serialized and len(old) <= len(value) and value[: len(old)] == old):
            serialized[key] = prev_serialized[key] + [serde.serialize(item) for item in value[len(old):]]
        else:
            full[key] = value
    if full:
        serialized.update(State(full).serialize())
    ordered = {key: serialized[key] for key in values}  # same key order as state.serialize()
    raw = {key: list(value) if type(value) is list else value for key, value in values.items()}
    return ordered, (raw, ordered)


def deserialize_state(serialized: dict[str, Any], needs_serde: set[str]) -> State:
    """Equals `State.deserialize(serialized)` when keys outside `needs_serde` hold plain JSON."""
    plain = {k: v for k, v in serialized.items() if k not in needs_serde and k not in FIELD_SERIALIZATION}
    walked = State.deserialize({k: v for k, v in serialized.items() if k not in plain}).get_all()
    return State({key: plain[key] if key in plain else walked[key] for key in serialized})
