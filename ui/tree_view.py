"""History's view of a conversation as a tree: every branch under the one it forked from, with the
message where it diverges; clicking one shows it (the URL's `?b=`). Also the ratings per step, for
History's table. Only the facade is used."""
from __future__ import annotations

import streamlit as st

from core.chat import ChatService, OutlineEntry
from core.text import title_text
from ui import nav
from ui.format import escape_markdown, short_id

THUMBS = {True: "👍", False: "👎", None: ""}


def label(entry: OutlineEntry) -> str:
    """"↳ Branch 1a2b3c4d · 6 messages · you: «where it diverges»" (plain text, Markdown escaped)."""
    shape = entry.shape
    arrow = "↳ " if entry.depth else ""
    parts = [f"{arrow}Branch {short_id(shape.app_id)}", f"{shape.length} messages"]
    first = entry.diverges_with
    if first is not None:
        who = "you" if first.get("role") == "user" else "reply"
        parts.append(f"{who}: “{title_text(str(first.get('content') or ''), 60)}”")
    elif shape.parent:
        parts.append("no messages of its own yet")
    return escape_markdown(" · ".join(parts))


def render(service: ChatService, partition_key: str, shown: str | None) -> None:
    """The outline, indented by depth; the branch shown is marked and not a button."""
    entries = service.tree_outline(partition_key)
    if len(entries) < 2:
        st.caption("One branch so far: edit a message, regenerate a reply or fork a step to start another.")
        return
    for entry in entries:
        indent, body = st.columns([max(entry.depth, 0) * 0.04 + 0.001, 1], gap=None)
        with body:
            if entry.shape.app_id == shown:
                st.markdown(f"**{label(entry)}** · shown")
            else:
                st.button(label(entry), key=f"tree_{entry.shape.app_id}", type="tertiary",
                          on_click=nav.select, args=(partition_key, entry.shape.app_id))


def ratings_by_step(service: ChatService, partition_key: str, app_id: str) -> dict[int, str]:
    """Sequence id -> "👍 comment" for the steps of this branch that wrote a rated reply."""
    return {f.sequence_id: " ".join(x for x in (THUMBS[f.thumbs_up], f.comment or "") if x)
            for f in service.feedback_of_conversation(partition_key) if f.app_id == app_id}
