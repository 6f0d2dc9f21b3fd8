"""How one chat message looks, on the Chat page and in the History page's "what changed"."""
from __future__ import annotations

from typing import Any

import streamlit as st

from core.chat import REFUSED, STOPPED
from core.text import without_remote_images

AVATARS = {"user": ":material/person:", "assistant": ":material/smart_toy:"}


def render_message(message: dict[str, Any]) -> None:
    """Markdown renders; raw HTML stays text and images become links. Stopped and refused replies say so."""
    role = message.get("role")
    if role not in AVATARS:
        return  # the system prompt is not part of the conversation shown
    with st.chat_message(role, avatar=AVATARS[role]):
        st.markdown(without_remote_images(message.get("content") or "") or "*(empty reply)*")
        if message.get("status") == STOPPED:
            st.caption(":material/stop_circle: Stopped: the reply was cut off here.")
        elif message.get("status") == REFUSED:
            st.caption(":material/shield: Refused by the safety policy: the model was not asked.")
