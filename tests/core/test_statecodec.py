"""The delta codec on its own (no database): what each snapshot stores, and that every one decodes.

`Rows` plays the database: it keeps the rows `encode` asks to write (and deletes merged chunks),
and answers `decode`'s fetchers the way core/snapshot_rows.py does.
"""
from __future__ import annotations

import dataclasses
import json

import pytest
from burr.core import State

from core.errors import UnreadableSnapshotError
from core.storage import codec as statecodec
from core.storage.codec import CHUNK_ITEMS, INLINE_LIMIT, Manifest, decode, encode, pack, unpack
from core.storage.serde import deserialize_state, serialize_state

BIG = "x" * (INLINE_LIMIT + 50)  # too big to live inline in the manifest


@dataclasses.dataclass
class Rows:
    values: dict = dataclasses.field(default_factory=dict)  # (key, sequence_id) -> data
    chunks: dict = dataclasses.field(default_factory=dict)  # (key, generation, start) -> (count, data)
    manifests: dict = dataclasses.field(default_factory=dict)  # sequence_id -> manifest JSON
    last: tuple = (None, None)  # (serialized state, manifest) of the previous save

    def save(self, sequence_id: int, state: dict) -> statecodec.EncodedSnapshot:
        """Encodes against the previous save, like the persister does, and stores the rows."""
        enc = encode(state, sequence_id, *self.last)
        for key, generation, start, end in enc.merged:
            for found in [k for k in self.chunks if k[:2] == (key, generation) and start <= k[2] < end]:
                del self.chunks[found]
        for key, data in enc.values:
            self.values[(key, sequence_id)] = data
        for chunk in enc.chunks:
            assert (chunk.key, chunk.generation, chunk.start) not in self.chunks, "a chunk is written once"
            self.chunks[(chunk.key, chunk.generation, chunk.start)] = (chunk.count, chunk.data)
        self.manifests[sequence_id] = enc.manifest.to_json()
        self.last = (state, enc.manifest)
        return enc

    def load(self, sequence_id: int) -> dict:
        return self.load_marked(sequence_id)[0]

    def load_marked(self, sequence_id: int, known: dict | None = None) -> tuple[dict, set]:
        """Decodes one snapshot; `known` plays the persister's list cache: (key, generation) -> items."""
        known = {} if known is None else known

        def fetch_values(pointers: dict) -> dict:
            return {k: self.values[(k, s)] for k, s in pointers.items() if (k, s) in self.values}

        def read_list(key: str, generation: int, length: int, flags: int | None) -> tuple[list, bool]:
            prefix = known.get((key, generation), [])
            chunks = sorted((s, c, d) for (k, g, s), (c, d) in self.chunks.items()
                            if (k, g) == (key, generation) and s < length and s + c > len(prefix))
            items, marked, _ = statecodec.assemble_list(key, prefix, False, chunks, length, flags)
            if len(items) > len(prefix):
                known[(key, generation)] = list(items)
            return items, marked

        return decode(Manifest.from_json(self.manifests[sequence_id]), fetch_values, read_list)

    def items_stored(self, key: str) -> int:
        return sum(count for (k, _, _), (count, _) in self.chunks.items() if k == key)


def msg(i: int) -> dict:
    return {"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i} " + "words " * 20}


def test_unchanged_keys_are_not_stored_again():
    rows = Rows()
    rows.save(0, {"doc": BIG, "n": 1})
    enc = rows.save(1, {"doc": BIG, "n": 2})
    assert enc.values == [] and enc.chunks == []  # only the manifest: `doc` points at step 0
    assert enc.manifest.values == {"doc": 0} and enc.manifest.inline == {"n": 2}
    assert rows.load(1) == {"doc": BIG, "n": 2} and rows.load(0) == {"doc": BIG, "n": 1}


def test_big_value_is_stored_once_per_change():
    rows = Rows()
    versions = [BIG, BIG, BIG + "!", BIG + "!", BIG]
    for seq, value in enumerate(versions):
        rows.save(seq, {"doc": value})
    assert sorted(rows.values) == [("doc", 0), ("doc", 2), ("doc", 4)]
    assert [rows.load(seq)["doc"] for seq in range(5)] == versions


def test_a_type_change_between_equal_values_is_a_change():
    rows = Rows()
    rows.save(0, {"doc": {"flags": [1] * 60}})
    rows.save(1, {"doc": {"flags": [True] * 60}})  # == in Python, different JSON
    rows.save(2, {"doc": {"flags": [1.0] * 60}})
    assert [rows.load(seq)["doc"]["flags"][0] for seq in range(3)] == [1, True, 1.0]
    assert [type(rows.load(seq)["doc"]["flags"][0]) for seq in range(3)] == [int, bool, float]


def test_appended_list_stores_only_the_new_items():
    rows = Rows()
    history: list = []
    for seq in range(10):
        history = [*history, msg(seq)]
        enc = rows.save(seq, {"chat_history": history})
        assert [(c.start, c.count) for c in enc.chunks] == [(seq, 1)]
        assert statecodec.unpack(enc.chunks[0].data) == [msg(seq)]
    assert rows.items_stored("chat_history") == 10
    assert all(rows.load(seq)["chat_history"] == history[: seq + 1] for seq in range(10))


def test_unchanged_list_stores_nothing():
    rows = Rows()
    rows.save(0, {"chat_history": [msg(0), msg(1)], "safe": False})
    enc = rows.save(1, {"chat_history": [msg(0), msg(1)], "safe": True})
    assert enc.chunks == [] and enc.manifest.lists["chat_history"][:2] == [0, 2]


def test_pending_items_are_sealed_into_one_chunk_and_every_snapshot_still_decodes():
    rows = Rows()
    history: list = []
    total = CHUNK_ITEMS * 3 + 5
    for seq in range(total):
        history = [*history, msg(seq)]
        rows.save(seq, {"chat_history": history})
    starts = sorted(start for (_, _, start) in rows.chunks)
    assert starts[:3] == [0, CHUNK_ITEMS, 2 * CHUNK_ITEMS]  # sealed chunks of CHUNK_ITEMS items
    assert len(starts) == 3 + (total - 3 * CHUNK_ITEMS)  # plus one small chunk per pending item
    assert rows.items_stored("chat_history") == total  # each item stored once: storage stays linear
    for seq in range(total):
        assert rows.load(seq)["chat_history"] == history[: seq + 1], seq


def test_rewritten_list_starts_a_new_generation():
    rows = Rows()
    rows.save(0, {"chat_history": [msg(0), msg(1), msg(2)]})
    enc = rows.save(1, {"chat_history": [msg(0), msg(9)]})  # an item changed, and one is gone
    assert enc.manifest.lists["chat_history"][:2] == [1, 2]
    assert [(c.generation, c.start, c.count) for c in enc.chunks] == [(1, 0, 2)]
    enc = rows.save(2, {"chat_history": [msg(0), msg(9), msg(3)]})  # then appends continue it
    assert [(c.generation, c.start, c.count) for c in enc.chunks] == [(1, 2, 1)]
    assert rows.load(0)["chat_history"] == [msg(0), msg(1), msg(2)]
    assert rows.load(2)["chat_history"] == [msg(0), msg(9), msg(3)]


def test_list_emptied_and_refilled():
    rows = Rows()
    rows.save(0, {"chat_history": [msg(0)]})
    rows.save(1, {"chat_history": []})
    rows.save(2, {"chat_history": [msg(5)]})
    assert [rows.load(seq)["chat_history"] for seq in range(3)] == [[msg(0)], [], [msg(5)]]


def test_deleted_key_is_gone_from_later_snapshots_only():
    rows = Rows()
    rows.save(0, {"doc": BIG, "tmp": 1, "chat_history": [msg(0)]})
    enc = rows.save(1, {"chat_history": [msg(0)]})
    assert set(enc.manifest.inline) | set(enc.manifest.values) | set(enc.manifest.lists) == {"chat_history"}
    assert rows.load(1) == {"chat_history": [msg(0)]}
    assert rows.load(0) == {"doc": BIG, "tmp": 1, "chat_history": [msg(0)]}
    rows.save(2, {"doc": BIG, "chat_history": [msg(0)]})  # back again: stored anew
    assert ("doc", 2) in rows.values and rows.load(2)["doc"] == BIG


def test_list_chunks_are_lz4_compressed_when_that_saves_space():
    small, big = [msg(0)], [msg(i) for i in range(CHUNK_ITEMS)]
    assert statecodec.pack_items(statecodec.dumps([1]))[:1] == b"j"  # too small to gain
    packed = statecodec.pack_items(statecodec.dumps(big))
    assert packed[:1] == b"4" and len(packed) < len(statecodec.dumps(big)) / 2
    assert statecodec.unpack(packed) == big and statecodec.unpack(statecodec.pack_items(statecodec.dumps(small))) == small
    with pytest.raises(UnreadableSnapshotError, match="codec"):
        statecodec.unpack(b"x[1]")


@pytest.mark.parametrize("odd", [2**70, -(2**64), float("nan"), "a\ud800b", 1e308, -0.0, "id 12345678901234567890"])
def test_lists_load_exactly_whatever_json_the_fast_parser_would_get_wrong_or_refuse(odd):
    rows = Rows()
    rows.save(0, {"items": [msg(0)]})
    rows.save(1, {"items": [msg(0), {"value": odd}]})
    loaded = rows.load(1)["items"][1]["value"]
    assert type(loaded) is type(odd) and json.dumps(loaded) == json.dumps(odd)  # NaN != NaN: compare JSON text


def test_compression_round_trip_and_small_values_stay_plain():
    text = "the same words again " * 200
    packed = pack({"text": text, "n": [1, 2.5, None, True]})
    assert packed[:1] == b"z" and len(packed) < len(text) / 5
    assert unpack(packed) == {"text": text, "n": [1, 2.5, None, True]}
    assert pack("short")[:1] == b"j" and unpack(pack("short")) == "short"
    incompressible = bytes(range(256)).hex() * 2  # hex of distinct bytes barely compresses... still JSON
    assert unpack(pack(incompressible)) == incompressible
    rows = Rows()
    rows.save(0, {"doc": text, "uni": "héllo ☃ " * 30})
    assert rows.load(0) == {"doc": text, "uni": "héllo ☃ " * 30}


def test_missing_rows_are_an_error_not_a_shorter_state():
    rows = Rows()
    rows.save(0, {"doc": BIG, "chat_history": [msg(0), msg(1)]})
    saved = dict(rows.chunks)
    rows.chunks.clear()
    with pytest.raises(UnreadableSnapshotError, match="expects 2 items"):
        rows.load(0)
    rows.chunks.update(saved)
    rows.values.clear()
    with pytest.raises(UnreadableSnapshotError, match="missing"):
        rows.load(0)


def test_decode_names_the_keys_that_need_burr_serde():
    rows = Rows()
    marked = {"__burr_serde__": "pickle", "value": "abc"}
    rows.save(0, {"plain": [msg(0)], "objects": [marked], "doc": {"inner": marked, "pad": BIG}, "small": 1})
    state, needs_serde = rows.load_marked(0)
    assert needs_serde == {"objects", "doc", "small"}  # inline values are cheap: always walked
    assert state["objects"] == [marked]


def test_the_manifest_flags_serde_markers_and_long_digits_and_old_manifests_are_searched():
    rows = Rows()
    marked = {"__burr_serde__": "pickle", "value": "abc"}
    rows.save(0, {"plain": [msg(0)], "objects": [msg(1)]})
    rows.save(1, {"plain": [msg(0), msg(2)], "objects": [msg(1), marked]})  # the marker arrives in an append
    rows.save(2, {"plain": [msg(0), msg(2), msg(3)], "objects": [msg(1), marked, msg(4)]})
    flags = {seq: {k: v[3] for k, v in Manifest.from_json(rows.manifests[seq]).lists.items()} for seq in range(3)}
    flat = statecodec.ALL_FLAT_DICTS  # every item is a dict of strings
    assert flags == {0: {"plain": flat, "objects": flat}, 1: {"plain": flat, "objects": flat | 1},
                     2: {"plain": flat, "objects": flat | 1}}
    rows.save(5, {"plain": [msg(0), 12345678901234567890], "objects": [msg(1)]})
    assert Manifest.from_json(rows.manifests[5]).lists["plain"][3] == statecodec.HAS_LONG_DIGITS
    old = json.loads(rows.manifests[2])
    rows.manifests[2] = json.dumps({key: entry[:4] for key, entry in old.items()})  # as written before the flag
    assert rows.load_marked(2)[1] == {"objects"}  # found by searching the text
    rows.last = (rows.load(2), Manifest.from_json(rows.manifests[2]))
    enc = rows.save(3, {"plain": [msg(0), msg(2), msg(3)], "objects": [msg(1), marked, msg(4), msg(5)]})
    assert enc.manifest.lists["objects"][3] == 1 and enc.manifest.lists["plain"][3] == 0  # flags restored


# ---- Burr-state side: serialize_state / deserialize_state ------------------------------------------
def test_serialize_state_matches_burr_through_appends_rewrites_and_new_keys():
    states = [
        State({"chat_history": [], "n": 0}),
        State({"chat_history": [msg(0)], "n": 1, "prompt": "hi"}),
        State({"chat_history": [msg(0), msg(1)], "n": 2, "prompt": "hi"}),
        State({"chat_history": [msg(7)], "n": 3}),  # rewritten, prompt deleted
        State({"chat_history": [msg(7), {"role": "user", "content": 1.0}], "n": 4}),
        State({"chat_history": [msg(7), {"role": "user", "content": True}], "n": 5}),  # == but not the same JSON
    ]
    previous = None
    for state in states:
        serialized, previous = serialize_state(state, previous)
        assert json.dumps(serialized) == json.dumps(state.serialize())


def test_serialize_state_sees_an_in_place_append_after_the_save():
    history = [msg(0)]
    state = State({"chat_history": history})
    _, remembered = serialize_state(state)
    history.append(msg(1))  # not how Burr works, but a list mutated after saving must not be missed
    serialized, _ = serialize_state(State({"chat_history": history}), remembered)
    assert serialized["chat_history"] == [msg(0), msg(1)]


def test_deserialize_state_equals_burr_for_plain_and_marked_values():
    serialized = {"chat_history": [msg(0)], "n": 1, "when": {"__burr_serde__": "unknown-kind", "v": 1}}
    plain = deserialize_state({"chat_history": [msg(0)], "n": 1}, needs_serde={"n"})
    assert plain.get_all() == State.deserialize({"chat_history": [msg(0)], "n": 1}).get_all()
    with pytest.raises(ValueError):  # marked values still go through Burr's serde (which knows no such kind)
        deserialize_state(serialized, needs_serde={"when"})


def test_a_list_item_changing_type_between_equal_values_is_a_change():
    rows = Rows()
    rows.save(0, {"scores": [1, 2]})
    rows.last = (json.loads(json.dumps(rows.last[0])), rows.last[1])  # as after a reload: equal, not the same objects
    rows.save(1, {"scores": [True, 2, 3]})
    assert [type(x) for x in rows.load(1)["scores"]] == [bool, int, int]
    assert rows.load(0)["scores"] == [1, 2]


def test_a_decoded_state_keeps_the_key_order_of_the_saved_one():
    rows = Rows()
    state = {"z_list": [msg(0)], "a_big": BIG, "m_small": 1, "b_list": []}
    rows.save(0, state)
    assert list(rows.load(0)) == list(state)


def test_a_known_prefix_is_extended_across_merges_and_equals_a_full_decode():
    """A cache filled by earlier loads (including loads made before a merge rewrote the small chunks
    they read) decodes every snapshot exactly as a decode from scratch does."""
    rows, known = Rows(), {}
    history: list = []
    for seq in range(CHUNK_ITEMS * 2 + 7):
        history = [*history, msg(seq)]
        rows.save(seq, {"chat_history": history})
        if seq % 5 == 0:
            assert rows.load_marked(seq, known) == rows.load_marked(seq)  # cache filled mid-way
    assert len(known[("chat_history", 0)]) > CHUNK_ITEMS  # the cache did grow as the list did
    for seq in [*range(CHUNK_ITEMS * 2 + 7)][::-1]:  # newest first, then older: served from the prefix
        assert rows.load_marked(seq, known) == rows.load_marked(seq)


def test_assemble_list_takes_only_the_items_past_the_prefix_from_an_overlapping_chunk():
    prefix = [msg(0), msg(1), msg(2)]
    merged_json = statecodec.dumps([msg(1), msg(2), msg(3), msg(4)])
    merged = (1, 4, statecodec.pack_items(merged_json))  # a merge rewrote items 1..4
    items, marked, json_bytes = statecodec.assemble_list("h", prefix, False, [merged], 5)
    assert items == [msg(i) for i in range(5)] and not marked and json_bytes == len(merged_json)
    assert items is not prefix and len(prefix) == 3  # the caller's prefix is never changed
    with pytest.raises(UnreadableSnapshotError, match="chunk at 4, expected 3"):
        statecodec.assemble_list("h", prefix, False, [(4, 1, statecodec.pack_items(b"[1]"))], 5)
