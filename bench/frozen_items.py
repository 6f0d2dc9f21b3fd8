"""What keeping saved items safe costs: frozen items (what Burrow does) against the alternatives.

    python -m bench.frozen_items [--turns 1000]

One conversation of `--turns` turns (two ~600-byte messages each) on a SQLite file, then loads of
its latest step, in one process, as ratios against a baseline measured in the same run:
- first load in a process (cache emptied): Burrow freezes each decoded item once, vs the same
  load with freezing switched off (unsafe: what the storage layer did before);
- every later load: frozen items cost nothing more, vs copying every item on each load (the other
  way to keep callers from changing cached items);
- a save compares the new history with the frozen copy of the last one by value, vs by identity.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

from burr.core import State

from core.storage import SQLAlchemyPersister
from core.storage import codec

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()


def median_ms(work: Callable[[], object], repeat: int = 40, before: Callable[[], object] = lambda: None) -> float:
    samples = []
    for _ in range(repeat):
        before()
        began = time.perf_counter()
        work()
        samples.append(time.perf_counter() - began)
    return statistics.median(samples) * 1000


def conversation(persister: SQLAlchemyPersister, turns: int) -> list[dict]:
    history: list[dict] = []
    for turn in range(turns):
        for offset, role in enumerate(("user", "assistant")):
            text = " ".join(WORDS[(turn * 3 + offset + i) % 10] for i in range(90))
            history = [*history, {"role": role, "content": text}]
            persister.save("c", "a", 2 * turn + offset, role, State({"chat_history": history}), "completed")
    return history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        persister = SQLAlchemyPersister.from_url(f"sqlite:///{tmp}/bench.db")
        persister.initialize()
        history = conversation(persister, args.turns)
        load = lambda: persister.load("c", "a")  # noqa: E731
        cold = median_ms(load, before=persister.list_cache.clear)
        frozen_dict, freeze_items = codec.FrozenDict, codec.freeze_items
        codec.FrozenDict, codec.freeze_items = (lambda item: item), (lambda items: items)
        cold_unfrozen = median_ms(load, before=persister.list_cache.clear)
        codec.FrozenDict, codec.freeze_items = frozen_dict, freeze_items
        load()
        warm = median_ms(load)
        warm_copying = median_ms(lambda: [dict(item) for item in load()["state"]["chat_history"]])
        plain = [dict(item) for item in history]
        by_value = median_ms(lambda: plain == history)
        by_identity = median_ms(lambda: history[:] == history)
        persister.engine.dispose()
    n = 2 * args.turns
    print(f"{n} messages; medians of 40 calls, one process")
    print(f"first load: frozen {cold:.2f} ms vs not frozen {cold_unfrozen:.2f} ms ({cold / cold_unfrozen:.2f}x)")
    print(f"later loads: frozen {warm:.2f} ms vs copying every item {warm_copying:.2f} ms ({warm_copying / warm:.2f}x)")
    print(f"save's history check: by value {by_value:.3f} ms vs by identity {by_identity:.3f} ms")


if __name__ == "__main__":
    main()
