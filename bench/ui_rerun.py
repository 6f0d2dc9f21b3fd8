"""Server-side time of the Chat page, short and long conversations in one run, without model latency.

    python -m bench.ui_rerun [--tracker off] [--turns 20] [--small 10] [--large 1000]

Streamlit's AppTest runs ui/Home.py through the same script runner a browser session uses; the model is
the local fake OpenAI server answering instantly, so the figures are Burrow's own work (persisting three
steps, rendering the page) plus the `openai` client's, not a model's. Two conversations are seeded
through the facade (`--small` and `--large` turns), then each round times one turn and one plain rerun
on each, alternating, so a busy machine slows both alike. Target (issue 13): the turn rerun at the
large conversation within 1.3x of the small one.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.3


def seed(turns_by_key: dict[str, int]) -> None:
    """Writes the conversations through the facade, as the app would have, with the same model server."""
    from core.chat import ChatService
    from core.settings import Settings

    service = ChatService.from_settings(Settings.load())
    try:
        for key, turns in turns_by_key.items():
            for turn in range(turns):
                run = service.send(key, f"seeded message {turn} of {key}")
                if not run.wait(30) or run.outcome != "answered":
                    raise SystemExit(f"seeding {key} failed at turn {turn}: {run.outcome} {run.error}")
    finally:
        service.close()


def timed(step) -> float:  # noqa: ANN001 - a callable
    began = time.perf_counter()
    step()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracker", default="burrow", help="tracker project, or 'off'")
    parser.add_argument("--turns", type=int, default=20, help="timed turns on each conversation")
    parser.add_argument("--small", type=int, default=10, help="turns already in the short conversation")
    parser.add_argument("--large", type=int, default=1000, help="turns already in the long conversation")
    args = parser.parse_args()

    from streamlit.testing.v1 import AppTest

    from tests.support.fake_openai import FakeOpenAI

    with tempfile.TemporaryDirectory(prefix="burrow-ui-bench-") as tmp, FakeOpenAI() as fake:
        os.environ.update(BURROW_DATABASE_URL=f"sqlite:///{tmp}/burrow.db", BURROW_TRACKER_DIR=f"{tmp}/tracker",
                          BURROW_TRACKER_PROJECT=args.tracker, OPENAI_BASE_URL=fake.base_url, OPENAI_API_KEY="bench")
        sizes = {"small": args.small, "large": args.large}
        began = time.perf_counter()
        seed(sizes)
        seeded = time.perf_counter() - began
        apps = {}
        for key in sizes:
            app = AppTest.from_file(str(ROOT / "ui" / "Home.py"), default_timeout=60)
            app.query_params["c"] = key
            app.run()
            for i in range(3):  # warm-up: imports, caches, first schema check
                app.chat_input[0].set_value(f"warm-up {i}").run()
            apps[key] = app
        turns: dict[str, list[float]] = {key: [] for key in sizes}
        reruns: dict[str, list[float]] = {key: [] for key in sizes}
        for i in range(args.turns):
            for key, app in apps.items():
                turns[key].append(timed(lambda: app.chat_input[0].set_value(f"message {i}").run()))
                reruns[key].append(timed(app.run))
        for key, app in apps.items():
            if app.exception:
                raise SystemExit(f"the page raised on the {key} conversation: {app.exception}")
        report(args, sizes, turns, reruns, {key: len(app.chat_message) for key, app in apps.items()}, seeded)


def report(args, sizes, turns, reruns, shown, seeded) -> None:  # noqa: ANN001
    median = {key: statistics.median(values) * 1000 for key, values in turns.items()}
    plain = {key: statistics.median(values) * 1000 for key, values in reruns.items()}
    ratio = median["large"] / median["small"]
    print(f"tracker={args.tracker}, {args.turns} timed turns each, seeded in {seeded:.0f} s")
    for key in sizes:
        print(f"  {sizes[key]:>5} turns: turn rerun (send, stream, save 3 steps, render) median {median[key]:.0f} ms; "
              f"plain rerun median {plain[key]:.0f} ms; {shown[key]} messages on the page")
    verdict = "PASS" if ratio <= TARGET else "FAIL"
    print(f"  {verdict}: turn rerun at {sizes['large']} turns / at {sizes['small']} turns = {ratio:.2f}x "
          f"(target <= {TARGET}x)")


if __name__ == "__main__":
    main()
