"""Chat page: the selected conversation's messages from persisted Burr state, and one turn per message.

A turn streams into the page (`st.write_stream` over `Turn`), then the page reruns so everything
shown comes from the database again. What a turn leaves to say (an error, a notice) is kept in
session state for that rerun; whether a Retry is needed comes from the stored state itself.
A turn's error was logged by the turn (core/chat.py); this page only shows it.
"""
from __future__ import annotations

import logging

import streamlit as st

from core.chat import ChatService, ConversationView, InputError, Turn
from ui import nav, sidebar
from ui.format import clip, escape_markdown, short_id
from ui.messages import AVATARS, render_message
from ui.nav import Selection
from ui.services import get_service

# Streamlit runs a page as __main__, so the logger is named for the module it is.
log = logging.getLogger("ui.views.chat")
PLACEHOLDER = "Message Burrow…"
_LAST = "chat_last_turn"  # {"key", "outcome", "error", "notice", "prompt"} of the latest turn
_ACTION = "chat_action"  # (kind, partition key, app id, text) requested by Retry / Continue / Send again


def main() -> None:
    service = get_service()
    selection = nav.current(service, create=True)
    sidebar.render(service, selection.partition_key)
    if selection.problem:
        nav.show_problem(service, selection)
    _wait_for_running_turn(service, selection.partition_key)
    view = service.open(selection.partition_key, selection.app_id)
    header(service, selection, view)
    for message in view.messages:
        render_message(message)
    prompt = st.chat_input(PLACEHOLDER)
    action = st.session_state.pop(_ACTION, None)
    if prompt is not None:
        send(service, selection, view, prompt)
    elif action is not None and action[1] == selection.partition_key:
        kind, key, app_id, text = action
        turn = service.send(key, text, app_id) if kind == "resend" else service.retry(key, app_id)
        run_turn(turn, selection, text if kind == "resend" else None)
    status(selection, view)


def _wait_for_running_turn(service: ChatService, partition_key: str, timeout: float = 10.0) -> None:
    """A click during a reply (Stop, or any other) starts this run while the interrupted one is still
    saving the partial reply; waiting for the conversation's lock shows that reply, not the state before it."""
    lock = service.conversation_lock(partition_key)
    if lock.acquire(timeout=timeout):
        lock.release()


def header(service: ChatService, selection: Selection, view: ConversationView) -> None:
    """Title, the model badge (with how to connect a real model when offline) and the branch."""
    title = selection.summary.title if selection.summary else "New chat"
    st.subheader(escape_markdown(clip(title, 60)), anchor=False)
    model = service.model
    st.badge(model.label, icon=":material/memory:", color="orange" if model.offline else "green",
             help="The model that answers in this chat.")
    if model.offline:
        st.caption("Replies come from a built-in echo model. To chat with a real one, set `OPENAI_API_KEY` "
                   "(OpenAI) or `OPENAI_BASE_URL` (Ollama, vLLM, LM Studio…) in the environment or in "
                   "`.streamlit/secrets.toml`, then restart Burrow.")
    if selection.app_id and view.app_id:
        st.caption(f"Branch `{short_id(view.app_id)}` · browse or switch branches in History.")
    if not view.messages:
        st.markdown("#### What can I help with?")
        st.caption("Every step of this chat is saved as a Burr state snapshot: browse them in **History**, "
                   "and fork the conversation from any step.")


def send(service: ChatService, selection: Selection, view: ConversationView, prompt: str) -> None:
    try:
        turn = service.send(selection.partition_key, prompt, selection.app_id, expected_messages=len(view.messages))
    except InputError as exc:  # the user's to fix, not Burrow's trouble: INFO, without the message itself
        log.info("Message not sent on conversation %s: %s", selection.partition_key, exc)
        st.warning(str(exc), icon=":material/edit_note:")
        if prompt.strip():  # the input box is cleared on send: keep the text within reach
            with st.expander("Your message, to copy and shorten"):
                st.code(prompt, language=None, wrap_lines=True)
        return
    run_turn(turn, selection, prompt)


def run_turn(turn: Turn, selection: Selection, prompt: str | None) -> None:
    """Shows the user's message at once, streams the reply, records the outcome and reruns."""
    st.session_state.pop(_LAST, None)
    if prompt is not None:
        render_message({"role": "user", "content": prompt})
    with st.chat_message("assistant", avatar=AVATARS["assistant"]):
        # Any click reruns the page and interrupts write_stream; closing the stream then keeps the
        # partial reply, saved as stopped. The button only has to exist.
        st.button("Stop", icon=":material/stop_circle:", type="tertiary", key="chat_stop")
        stream = iter(turn)
        try:
            st.write_stream(stream)
        finally:
            stream.close()
    st.session_state[_LAST] = {
        "key": selection.partition_key, "outcome": turn.outcome, "notice": turn.notice, "prompt": prompt,
        "error": str(turn.error) if turn.error else None,
    }
    nav.select(selection.partition_key, selection.app_id)
    st.rerun()


def status(selection: Selection, view: ConversationView) -> None:
    """Under the messages: a notice from the last turn, and Retry / Continue when a turn did not finish."""
    last = st.session_state.get(_LAST) or {}
    if last.get("key") != selection.partition_key:
        last = {}
    if last.get("notice"):
        st.info(last["notice"], icon=":material/sync:")
    if view.failed_step:
        message = last.get("error") if last.get("outcome") == "failed" else None
        st.error(message or f"The last reply did not finish (the {view.failed_step} step failed).",
                 icon=":material/error:")
        _action_button("Retry", ("retry", selection.partition_key, view.app_id, None))
    elif view.pending_step:
        st.info(f"This branch stops in the middle of a turn (next step: `{view.pending_step}`). "
                "Continue to get the reply, or send a new message.", icon=":material/pause_circle:")
        _action_button("Continue", ("retry", selection.partition_key, view.app_id, None))
    elif last.get("outcome") == "failed":  # nothing was saved, e.g. the database went away mid-turn
        st.error(last.get("error") or "The message could not be sent.", icon=":material/error:")
        if last.get("prompt"):
            st.caption("Your message was not saved:")
            st.code(last["prompt"], language=None, wrap_lines=True)
            _action_button("Send again", ("resend", selection.partition_key, view.app_id, last["prompt"]))


def _action_button(label: str, action: tuple) -> None:
    st.button(label, type="primary", icon=":material/refresh:", key=f"chat_{label.lower().replace(' ', '_')}",
              on_click=_request, args=(action,))


def _request(action: tuple) -> None:
    """Runs before the next rerun; the turn itself streams in the page body, below the messages."""
    st.session_state[_ACTION] = action


main()
