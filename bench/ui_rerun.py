"""Server-side time of the Chat page: one turn's rerun and a plain rerun, without model latency.

    python -m bench.ui_rerun [--tracker off] [--turns 20]

Streamlit's AppTest runs ui/Home.py through the same script runner a browser session uses; the model is
the local fake OpenAI server answering instantly, so the figures are Burrow's own work (persisting three
steps, rendering the page) plus the `openai` client's, not a model's.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracker", default="burrow", help="tracker project, or 'off'")
    parser.add_argument("--turns", type=int, default=20)
    args = parser.parse_args()

    from streamlit.testing.v1 import AppTest

    from tests.support.fake_openai import FakeOpenAI

    with tempfile.TemporaryDirectory(prefix="burrow-ui-bench-") as tmp, FakeOpenAI() as fake:
        os.environ.update(BURROW_DATABASE_URL=f"sqlite:///{tmp}/burrow.db", BURROW_TRACKER_DIR=f"{tmp}/tracker",
                          BURROW_TRACKER_PROJECT=args.tracker, OPENAI_BASE_URL=fake.base_url, OPENAI_API_KEY="bench")
        app = AppTest.from_file(str(ROOT / "ui" / "Home.py"), default_timeout=60)
        app.run()
        for i in range(5):  # warm-up: imports, caches, first schema check
            app.chat_input[0].set_value(f"warm-up {i}").run()
        turns, reruns = [], []
        for i in range(args.turns):
            began = time.perf_counter()
            app.chat_input[0].set_value(f"message {i}").run()
            turns.append(time.perf_counter() - began)
            began = time.perf_counter()
            app.run()
            reruns.append(time.perf_counter() - began)
        if app.exception:
            raise SystemExit(f"the page raised: {app.exception}")
        print(f"tracker={args.tracker}: turn rerun (send, stream, save 3 steps, render) median "
              f"{statistics.median(turns) * 1000:.0f} ms; plain rerun with {len(app.chat_message)} messages "
              f"median {statistics.median(reruns) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
