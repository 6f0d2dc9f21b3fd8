"""What sits under each saved message on the Chat page: versions, Edit, Regenerate, Copy, feedback, facts.

Every control only asks: a click stores a request in session state (or rates through the facade)
and the page body (views/chat.py) starts the run and attaches to it. An edit or a regenerate runs on
a new branch, so the URL then points at that branch and the versions switcher can bring back the old one.
"""
from __future__ import annotations

from typing import Any

import streamlit as st

from core.chat import ChatService, ConversationView, Feedback, InputError, Versions
from core.facts import describe, facts_of
from ui import nav

ACTION = "chat_action"  # {"kind", "key", "app_id", "text", "index"}: what a control asked the page to do
_EDITING = "chat_editing"  # (partition key, app id, index) of the message being edited


def request(kind: str, key: str, app_id: str | None, text: str | None = None, index: int | None = None) -> None:
    """Runs before the next rerun; the page body starts the turn, then attaches to it."""
    st.session_state[ACTION] = {"kind": kind, "key": key, "app_id": app_id, "text": text, "index": index}


def take(partition_key: str | None) -> dict[str, Any] | None:
    """The request a control made, if it is for the conversation shown."""
    action = st.session_state.pop(ACTION, None)
    return action if action is not None and action["key"] == partition_key else None


def render(service: ChatService, view: ConversationView, index: int, message: dict[str, Any]) -> None:
    """The line under message `index` of the branch shown (nothing while a reply is being written)."""
    if _editing(view, index):
        _edit_form(view, index, message)
        return
    busy = view.run is not None or view.replying_elsewhere
    versions = view.versions.get(index)
    with st.container(horizontal=True, vertical_alignment="center", gap="small"):
        if versions is not None:
            _switcher(view, versions)
        if message.get("role") == "user":
            st.button("Edit", icon=":material/edit:", type="tertiary", key=f"edit_{view.app_id}_{index}",
                      disabled=busy, help="Change this message and get a new reply; this version stays.",
                      on_click=_start_editing, args=(view, index))
        else:
            st.button("Regenerate", icon=":material/refresh:", type="tertiary", key=f"regen_{view.app_id}_{index}",
                      disabled=busy, help="Ask again for this reply; this version stays.",
                      on_click=request, args=("regenerate", view.partition_key, view.app_id, None, index))
        _copy(view, index, message)
        if message.get("role") == "assistant":
            _rating(service, view, index, view.feedback.get(index))
    facts = facts_of(message)
    if facts:
        st.caption(describe(facts))


def _switcher(view: ConversationView, versions: Versions) -> None:
    """`< 2/3 >`: the other versions of this message, each shown on the branch that has it."""
    here = versions.current
    st.button("", icon=":material/chevron_left:", type="tertiary", key=f"prev_{view.app_id}_{versions.index}",
              disabled=here == 0, help="Previous version", on_click=nav.select,
              args=(view.partition_key, versions.branches[max(0, here - 1)]))
    st.markdown(f"{here + 1}/{versions.count}")
    st.button("", icon=":material/chevron_right:", type="tertiary", key=f"next_{view.app_id}_{versions.index}",
              disabled=here == versions.count - 1, help="Next version", on_click=nav.select,
              args=(view.partition_key, versions.branches[min(versions.count - 1, here + 1)]))


def _copy(view: ConversationView, index: int, message: dict[str, Any]) -> None:
    """The message's raw text in a code box, whose own button copies it to the clipboard."""
    with st.popover("Copy", icon=":material/content_copy:", type="tertiary"):
        st.code(message.get("content") or "", language=None, wrap_lines=True)


def _rating(service: ChatService, view: ConversationView, index: int, saved: Feedback | None) -> None:
    key = f"rate_{view.app_id}_{index}"
    default = None if saved is None or saved.thumbs_up is None else int(saved.thumbs_up)
    st.feedback("thumbs", key=key, default=default, on_change=_rate, args=(service, view, index, key, saved))
    with st.popover("Comment" if not (saved and saved.comment) else "Comment ✓", icon=":material/comment:",
                    type="tertiary", help="A note on this reply, kept with your rating"):
        box = f"comment_{view.app_id}_{index}"
        st.text_area("Your comment on this reply", value=saved.comment if saved else "", key=box, max_chars=2000)
        st.button("Save comment", key=f"save_{box}", on_click=_comment, args=(service, view, index, box, saved))


def _rate(service: ChatService, view: ConversationView, index: int, key: str, saved: Feedback | None) -> None:
    value = st.session_state.get(key)
    _save_rating(service, view, index, None if value is None else value == 1, saved.comment if saved else None)


def _comment(service: ChatService, view: ConversationView, index: int, box: str, saved: Feedback | None) -> None:
    thumbs = st.session_state.get(f"rate_{view.app_id}_{index}")
    thumbs_up = (thumbs == 1) if thumbs is not None else (saved.thumbs_up if saved else None)
    _save_rating(service, view, index, thumbs_up, st.session_state.get(box))


def _save_rating(service: ChatService, view: ConversationView, index: int, thumbs_up: bool | None,
                 comment: str | None) -> None:
    try:
        service.set_feedback(view.partition_key, view.app_id, index, thumbs_up, comment)
    except InputError as exc:
        st.session_state["chat_rating_problem"] = str(exc)


def _editing(view: ConversationView, index: int) -> bool:
    return st.session_state.get(_EDITING) == (view.partition_key, view.app_id, index)


def _start_editing(view: ConversationView, index: int) -> None:
    st.session_state[_EDITING] = (view.partition_key, view.app_id, index)


def _edit_form(view: ConversationView, index: int, message: dict[str, Any]) -> None:
    box = f"edit_text_{view.app_id}_{index}"
    st.text_area("Edit your message", value=message.get("content") or "", key=box, height=120)
    with st.container(horizontal=True):
        st.button("Send", type="primary", icon=":material/send:", key=f"edit_send_{view.app_id}_{index}",
                  on_click=_send_edit, args=(view, index, box))
        st.button("Cancel", type="tertiary", key=f"edit_cancel_{view.app_id}_{index}", on_click=_stop_editing)


def _send_edit(view: ConversationView, index: int, box: str) -> None:
    _stop_editing()
    request("edit", view.partition_key, view.app_id, st.session_state.get(box), index)


def _stop_editing() -> None:
    st.session_state.pop(_EDITING, None)
