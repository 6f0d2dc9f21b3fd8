"""Read-only dicts and lists for list items the storage layer keeps and shares.

Saving only what changed means comparing a state with the previous one, and loading fast means
keeping the list items already read (listcache.py). Both hold on to objects; if code could change
such an object in place, a save would compare the changed object with itself, see no change and
silently drop the edit, and a later load would return the unsaved change. So the items the storage
layer keeps are frozen: a deep copy made once per item (when it is first saved or read), whose
mutators raise `TypeError` at the point of change with a message saying what to do instead.

`FrozenDict` and `FrozenList` are `dict` and `list` subclasses: `==`, `json.dumps`, orjson, Burr's
serde, Streamlit and `isinstance(x, dict)` treat them as the plain types. Like tuples, they are
their own copy (`copy.copy`, `copy.deepcopy`), which also makes Burr's deep copy of a state field
cheap. `dict(item)`, `{**item, ...}`, `list(items)` and slices give ordinary mutable objects.
"""
from __future__ import annotations

from typing import Any, NoReturn

READ_ONLY = ("Saved conversation data is read-only: this {kind} is shared with Burrow's storage, so changing "
             "it in place would change what later loads return without saving it. Build a changed copy "
             "instead, e.g. {{**message, 'content': new_text}} or [*history, new_message].")


def _refuse(kind: str):  # noqa: ANN202 - returns a method
    def refuse(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError(READ_ONLY.format(kind=kind))

    return refuse


class FrozenDict(dict):
    """A dict whose contents cannot change (see the module docstring)."""

    __slots__ = ()
    __setitem__ = __delitem__ = __ior__ = _refuse("a dict")
    clear = pop = popitem = setdefault = update = _refuse("a dict")

    def __copy__(self) -> "FrozenDict":
        return self

    def __deepcopy__(self, memo: dict) -> "FrozenDict":
        return self

    def __reduce__(self) -> tuple:
        return FrozenDict, (dict(self),)


class FrozenList(list):
    """A list whose contents cannot change (see the module docstring)."""

    __slots__ = ()
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse("a list")
    append = extend = insert = pop = remove = clear = sort = reverse = _refuse("a list")

    def __copy__(self) -> "FrozenList":
        return self

    def __deepcopy__(self, memo: dict) -> "FrozenList":
        return self

    def __reduce__(self) -> tuple:
        return FrozenList, (list(self),)


_CONTAINERS = frozenset({dict, list})
_FROZEN = frozenset({FrozenDict, FrozenList})


def freeze(value: Any) -> Any:
    """A read-only deep copy of a JSON-like value (the value itself when nothing in it can change)."""
    kind = type(value)
    if kind is dict:
        if _CONTAINERS.isdisjoint(map(type, value.values())):  # flat (a chat message): one C-level copy
            return FrozenDict(value)
        return FrozenDict({key: freeze(item) for key, item in value.items()})
    if kind is list:
        return FrozenList(freeze_items(value))
    if kind in _FROZEN or not isinstance(value, (dict, list)):
        return value  # already frozen, or a str/number/None/bool (immutable)
    return freeze(dict(value) if isinstance(value, dict) else list(value))  # other subclasses: as the plain type


def freeze_items(items: list[Any]) -> list[Any]:
    """A new plain list of frozen copies of `items` (its own items stay shared where already frozen)."""
    return [item if type(item) in _FROZEN else freeze(item) for item in items]
