"""Helpers for reading an AppTest page the way a user reads the screen."""
from __future__ import annotations

import re
import time

from streamlit.testing.v1 import AppTest

HISTORY = "views/history.py"  # page paths are relative to ui/Home.py
CHAT = "views/chat.py"


def plain(label: str) -> str:
    """A sidebar label without Markdown escapes and the time line, as a user reads it."""
    return re.sub(r"\\(.)", r"\1", label.split("  \n")[0])


def messages(at: AppTest) -> list[tuple[str, str]]:
    return [(m.name, m.markdown[0].value) for m in at.chat_message]


def sidebar_titles(at: AppTest) -> list[str]:
    return [plain(b.label) for b in at.sidebar.button if (b.key or "").startswith("open_")]


def button(at: AppTest, label: str):  # noqa: ANN201 - an AppTest Button
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r}; buttons: {[b.label for b in at.button]}"
    return matches[0]


def ok(at: AppTest) -> AppTest:
    """Asserts the run raised nothing (an exception element would mean a traceback on the page)."""
    assert not at.exception, [e.value for e in at.exception]
    return at


def run_for(at: AppTest, seconds: float, after=None) -> AppTest:  # noqa: ANN001
    """Runs the page for `seconds` (counted from when `after()` first returns something truthy, if
    given), then ends that script run the way a click, a reload or a closed tab does (Streamlit's
    stop request, honoured at the page's next Streamlit call), and keeps what the page showed at
    that moment: e.g. a reply still streaming, with its Stop button."""
    import streamlit.testing.v1.local_script_runner as runner_module

    def cut_short(runner, timeout: float = 3) -> None:  # noqa: ANN001 - a LocalScriptRunner
        if after is not None:
            wait_for(lambda: after() or runner.script_stopped(), timeout=20, what="the page to get going")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not runner.script_stopped():
            time.sleep(0.01)
        if not runner.script_stopped():
            runner.request_stop()

    original = runner_module.require_widgets_deltas
    runner_module.require_widgets_deltas = cut_short
    try:
        return at.run()
    finally:
        runner_module.require_widgets_deltas = original


def wait_for(condition, timeout: float = 10.0, what: str = "the condition"):  # noqa: ANN001, ANN201
    """Polls `condition()` until it returns something truthy (returned), or fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
