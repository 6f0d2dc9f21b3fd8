"""Helpers for reading an AppTest page the way a user reads the screen."""
from __future__ import annotations

import re

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
