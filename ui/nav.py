"""Which conversation and branch a page shows: the URL (`?c=<partition key>&b=<app id>`) is the truth.

Session state keeps a copy because a click on a navigation entry drops the query string; the
copy puts it back, so moving between Chat and History keeps the selection.
"""
from __future__ import annotations

import dataclasses
import logging

import streamlit as st

from core.chat import ChatService, ConversationSummary
from core.text import is_valid_conversation_id
from ui.format import clip

log = logging.getLogger(__name__)

CHAT_PAGE = "views/chat.py"
HISTORY_PAGE = "views/history.py"
_CURRENT = "current_selection"  # (partition key, app id or None)
_FRESH = "fresh_conversation_ids"  # ids this session created that have no message yet


@dataclasses.dataclass(frozen=True)
class Selection:
    """The conversation a page shows; `problem` explains why it cannot be shown."""

    partition_key: str | None
    app_id: str | None = None
    summary: ConversationSummary | None = None
    problem: str | None = None

    @property
    def is_new(self) -> bool:
        return self.summary is None and self.problem is None


def target_message() -> int | None:
    """The message the URL points at (`m`, from a search hit), or None for none or a bad value."""
    value = st.query_params.get("m", "")
    return int(value) if value.isdigit() and len(value) < 10 else None


def select(partition_key: str, app_id: str | None = None, message: int | None = None) -> None:
    """Points the URL (and the session's copy) at a conversation; safe inside widget callbacks.
    `message` (a search hit's index) goes in `m`, for the page to scroll to."""
    st.query_params.clear()
    st.query_params["c"] = partition_key
    if app_id:
        st.query_params["b"] = app_id
    if message is not None:
        st.query_params["m"] = str(message)
    st.session_state[_CURRENT] = (partition_key, app_id)


def new_conversation(service: ChatService) -> str:
    """A fresh id, selected; it joins the sidebar list once its first message is saved."""
    partition_key = service.new_conversation_id()
    st.session_state.setdefault(_FRESH, set()).add(partition_key)
    select(partition_key)
    return partition_key


def forget(partition_key: str) -> None:
    """After a delete: the session must not bring the conversation back from its copy."""
    if st.session_state.get(_CURRENT, (None,))[0] == partition_key:
        del st.session_state[_CURRENT]


def current(service: ChatService, create: bool) -> Selection:
    """Reads the selection from the URL (or the session's copy); `create` starts a new chat when none."""
    key, app_id = st.query_params.get("c"), st.query_params.get("b")
    if key is None and _CURRENT in st.session_state:
        key, app_id = st.session_state[_CURRENT]
        select(key, app_id)
    if key is None:
        if not create:
            return Selection(None)
        key = new_conversation(service)
    if not is_valid_conversation_id(key):
        return Selection(None, problem=f"“{clip(key, 60)}” is not a valid conversation link. "
                                        "Links look like `?c=` followed by letters and digits.")
    summary = service.conversation(key)
    if summary is None and key not in st.session_state.get(_FRESH, set()):
        return Selection(None, problem="This conversation does not exist: it may have been deleted, "
                                       "or the link is incomplete.")
    if app_id and app_id not in service.branch_ids(key):
        return Selection(key, None, summary, problem="This branch of the conversation does not exist.")
    st.session_state[_CURRENT] = (key, app_id)
    return Selection(key, app_id, summary)


def show_problem(service: ChatService, selection: Selection) -> None:
    """The clear message for a bad link, with ways back; stops the page."""
    log.info("Link not shown: %s", selection.problem)  # a mistyped or stale link: the user's, INFO
    st.warning(selection.problem, icon=":material/link_off:")
    if selection.partition_key:
        st.button("Open the latest branch", on_click=select, args=(selection.partition_key,))
    if st.button("Start a new chat", type="primary", icon=":material/add:"):
        open_new_chat(service)
    st.stop()


def open_new_chat(service: ChatService) -> None:
    """Starts a new conversation and shows it on the Chat page (from any page)."""
    st.switch_page(CHAT_PAGE, query_params={"c": new_conversation(service)})
