"""`save()` stores exactly what it is given, however the caller's objects changed since the last save,
and what `load()` returns cannot be changed in place behind the storage layer's back.

Before frozen items (core/storage/frozen.py) the persister reused earlier serialized items by object
identity, so an item edited in place after it was saved was never written again.
"""
from __future__ import annotations

import copy
import json
import pickle

import pytest
from burr.core import State

from core.storage import SQLAlchemyPersister
from core.storage.frozen import FrozenDict, FrozenList, freeze


def save_all(persister: SQLAlchemyPersister, states: list[dict], app_id: str = "a1") -> list[str]:
    """Saves each state as the next step and returns its JSON as it was at save time."""
    seen = []
    for seq, values in enumerate(states):
        persister.save("c1", app_id, seq, "step", State(values), "completed")
        seen.append(json.dumps(values, sort_keys=True))
    return seen


def assert_loads_exactly(url: str, seen: list[str], app_id: str = "a1") -> None:
    fresh = SQLAlchemyPersister.from_url(url)
    for seq, expected in enumerate(seen):
        loaded = fresh.load("c1", app_id, seq)["state"].get_all()
        assert json.dumps(loaded, sort_keys=True) == expected, f"step {seq}"
    fresh.engine.dispose()


def test_the_reported_case_an_item_edited_in_place_is_saved(persister, db_url):
    m1 = {"role": "user", "content": "original"}
    persister.save("c1", "a1", 0, "human_input", State({"chat_history": [m1]}), "completed")
    m1["content"] = "edited in place"
    persister.save("c1", "a1", 1, "ai_response",
                   State({"chat_history": [m1, {"role": "assistant", "content": "reply"}]}), "completed")
    fresh = SQLAlchemyPersister.from_url(db_url)
    assert fresh.load("c1", "a1")["state"]["chat_history"] == [
        {"role": "user", "content": "edited in place"}, {"role": "assistant", "content": "reply"}]
    assert fresh.load("c1", "a1", 0)["state"]["chat_history"] == [{"role": "user", "content": "original"}]


def test_nested_edits_shrinks_reorders_replacements_and_removed_keys(persister, db_url):
    history = [{"role": "user", "content": "a", "meta": {"tags": ["x"]}}, {"role": "assistant", "content": "b"}]
    doc = {"title": "t" * 300, "sections": [{"body": "s" * 200}]}
    snapshot = lambda: {"chat_history": history, "doc": doc, "gone": "soon"}
    persister.save("c1", "a1", 0, "s", State(snapshot()), "completed")
    seen = [json.dumps(snapshot(), sort_keys=True)]
    edits = [
        lambda: history[0]["meta"]["tags"].append("y"),  # a list inside a dict inside an item
        lambda: doc["sections"][0].update(body="changed " * 40),  # a big value changed deep inside
        lambda: history.reverse(),  # reordered
        lambda: history.__setitem__(1, {"role": "user", "content": "replaced"}),
        lambda: history.pop(),  # shrunk
        lambda: history.extend([{"role": "assistant", "content": str(i)} for i in range(70)]),  # past a chunk seal
        lambda: history[40].update(content="edited after the seal"),
    ]
    for seq, edit in enumerate(edits, start=1):
        edit()
        values = snapshot()
        if seq == len(edits):
            del values["gone"]  # a key removed
        persister.save("c1", "a1", seq, "s", State(values), "completed")
        seen.append(json.dumps(values, sort_keys=True))
    assert_loads_exactly(db_url, seen)


def test_numbers_keep_their_type_when_edited_in_place(persister, db_url):
    item = {"n": 1}
    seen = save_all(persister, [{"items": [item]}])
    item["n"] = 1.0  # == 1, but not the same JSON
    persister.save("c1", "a1", 1, "s", State({"items": [item]}), "completed")
    seen.append(json.dumps({"items": [item]}, sort_keys=True))
    item["n"] = True
    persister.save("c1", "a1", 2, "s", State({"items": [item]}), "completed")
    seen.append(json.dumps({"items": [item]}, sort_keys=True))
    assert_loads_exactly(db_url, seen)


def test_loaded_items_are_read_only_with_a_message_saying_what_to_do(persister, db_url):
    save_all(persister, [{"chat_history": [{"role": "user", "content": "hi", "parts": [{"t": "x"}]}]}])
    for reader in (persister, SQLAlchemyPersister.from_url(db_url)):
        message = reader.load("c1", "a1")["state"]["chat_history"][0]
        with pytest.raises(TypeError, match="read-only.*changed copy"):
            message["content"] = "changed"
        with pytest.raises(TypeError, match="read-only"):
            message["parts"][0]["t"] = "y"  # frozen all the way down
        with pytest.raises(TypeError, match="read-only"):
            message["parts"].append({})
    # a changed copy is an ordinary dict, and saving it stores the change
    history = persister.load("c1", "a1")["state"]["chat_history"]
    edited = [{**history[0], "content": "changed"}]
    persister.save("c1", "a1", 1, "s", State({"chat_history": edited}), "completed")
    assert SQLAlchemyPersister.from_url(db_url).load("c1", "a1")["state"]["chat_history"][0]["content"] == "changed"
    assert persister.load("c1", "a1", 0)["state"]["chat_history"][0]["content"] == "hi"  # the cache is intact


def test_the_loaded_list_itself_can_grow_and_be_saved(persister, db_url):
    seen = save_all(persister, [{"chat_history": [{"role": "user", "content": "one"}]}])
    history = persister.load("c1", "a1")["state"]["chat_history"]
    history.append({"role": "assistant", "content": "two"})  # the list is the caller's; its items are shared
    persister.save("c1", "a1", 1, "s", State({"chat_history": history}), "completed")
    seen.append(json.dumps({"chat_history": history}, sort_keys=True))
    assert_loads_exactly(db_url, seen)
    assert persister.load("c1", "a1", 0)["state"]["chat_history"] == [{"role": "user", "content": "one"}]


def test_frozen_values_behave_as_plain_json_everywhere_else():
    value = freeze({"a": [1, {"b": "c"}], "d": None})
    assert type(value) is FrozenDict and type(value["a"]) is FrozenList and type(value["a"][1]) is FrozenDict
    assert value == {"a": [1, {"b": "c"}], "d": None} and json.loads(json.dumps(value)) == value
    assert copy.deepcopy(value) is value and copy.copy(value) is value  # immutable: its own copy, like a tuple
    assert pickle.loads(pickle.dumps(value)) == value and type(pickle.loads(pickle.dumps(value))) is FrozenDict
    assert type({**value}) is dict and type(dict(value)) is dict and type(value["a"][:]) is list
    assert freeze(value) is value
    assert State({"v": value}).serialize() == {"v": {"a": [1, {"b": "c"}], "d": None}}
