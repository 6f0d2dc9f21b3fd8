"""How one chat message looks, on the Chat page, in a reply still streaming, and in History's "what changed".

One rule for every message text, saved or partial: Markdown renders, raw HTML stays text (never
`unsafe_allow_html`), and Markdown images become links (`without_remote_images`), so no viewer's
browser fetches a URL planted in a message, not even for a moment while a reply streams.
"""
from __future__ import annotations

import contextlib

from collections.abc import Callable
from typing import Any

import streamlit as st

from core.chat import REFUSED, STOPPED
from core.text import with_line_breaks, without_remote_images

AVATARS = {"user": ":material/person:", "assistant": ":material/smart_toy:"}
UNANSWERED = ":material/do_not_disturb_on: No reply — this message was not answered."
UNANSWERED_LAST = UNANSWERED + " Retry or send a new message."  # the buttons for that are right below it


Below = Callable[[int, dict[str, Any]], None]  # draws under message `index` (the Chat page's controls)


def shown_text(text: str | None) -> str:
    """The Markdown a message's text is shown as: the same for a saved reply and a partial one, with
    the writer's line breaks kept."""
    return with_line_breaks(without_remote_images(text or ""))


def render_message(message: dict[str, Any], unanswered: bool = False, last: bool = False,
                   below: Below | None = None, index: int = -1) -> None:
    """One saved message; stopped and refused replies say so, and so does a question left unanswered."""
    role = message.get("role")
    if role not in AVATARS:
        return  # the system prompt is not part of the conversation shown
    with st.chat_message(role, avatar=AVATARS[role]):
        st.markdown(shown_text(message.get("content")) or "*(empty reply)*")
        if message.get("status") == STOPPED:
            st.caption(":material/stop_circle: Stopped: the reply was cut off here.")
        elif message.get("status") == REFUSED:
            st.caption(":material/shield: Refused by the safety policy: the model was not asked.")
        if unanswered and role == "user":
            st.caption(UNANSWERED_LAST if last else UNANSWERED)
        if below is not None:
            below(index, message)


TARGET = "chat_target"  # the key (CSS class st-key-chat_target) of the message a search hit points at


def render_messages(messages: list[dict[str, Any]], unanswered: tuple[int, ...] = (), below: Below | None = None,
                    start: int = 0, target: int | None = None) -> None:
    """A conversation's messages from index `start` on, marking the user messages (by index) that never
    got a reply; message `target` sits in a keyed box, for the page to scroll to and mark."""
    marked = set(unanswered)
    for index in range(max(0, start), len(messages)):
        box = st.container(key=TARGET) if index == target else contextlib.nullcontext()
        with box:
            render_message(messages[index], unanswered=index in marked, last=index == len(messages) - 1,
                           below=below, index=index)
