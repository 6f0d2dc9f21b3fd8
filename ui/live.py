"""A page attached to a run: everything the run said so far, then its live tail, until it is done.

The run belongs to the service (core/runs.py), not to the page. Streamlit ends a script run early
(any click, a search, another page, a reload, a closed tab) by raising inside the script at its
next call into Streamlit. While a page follows a run, that call is the next element update, or,
while the run is silent, a session-state read every HEARTBEAT seconds. The exception leaves this
loop and closes its iterator over the run's events, and nothing else: the run goes on and saves
its reply, and the next page to open the conversation attaches to it again. Only Stop stops it.
"""
from __future__ import annotations

import dataclasses
import time

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from core.chat import ChatService, EventKind, Run
from core.runs import RunEvent
from ui.messages import AVATARS, render_message, shown_text

WAITING = "Waiting for the first words…"
QUEUED = "Waiting for the reply above to finish: yours goes next."
HEARTBEAT = 0.1  # seconds of silence after which the page looks up: a rerun can end its watching then
REDRAW_EVERY = 0.05  # at most ~20 redraws a second: each one sends the whole text so far to the browser
_TICK = "live_heartbeat"  # a session-state key that is only ever read


@dataclasses.dataclass
class LiveReply:
    """Where one run's reply is drawn: its notices, its text so far, and the line under it."""

    run: Run
    notices: DeltaGenerator
    text: DeltaGenerator
    line: DeltaGenerator
    first_words_only: bool = False  # follow only until the first words (see `follow`)


@dataclasses.dataclass
class _Progress:
    """What this page has drawn of a run so far."""

    backlog: int  # characters the run had when the page attached: drawn once, not piece by piece
    text: str = ""
    waiting: str = WAITING
    since: float = dataclasses.field(default_factory=time.monotonic)
    drawn_at: float = 0.0
    dirty: bool = False
    seconds_shown: int = -1


def place(service: ChatService, run: Run, prompt: str | None = None, first_words_only: bool = False,
          queued: bool = False) -> LiveReply:
    """Draws the reply's frame at once, before any event: the user's message, Stop, a waiting line
    (`queued`: it waits for the reply drawn above it, which the page follows first)."""
    if prompt is not None:
        render_message({"role": "user", "content": prompt})
    with st.chat_message("assistant", avatar=AVATARS["assistant"]):
        st.button("Stop", icon=":material/stop_circle:", type="tertiary", key=f"chat_stop_{run.id}",
                  on_click=service.stop, args=(run.id,), help="Stop this reply; what arrived so far is kept.")
        reply = LiveReply(run, st.container(), st.empty(), st.empty(), first_words_only)
    _waiting_line(reply, QUEUED if queued else WAITING, 0)
    return reply


def follow(reply: LiveReply) -> None:
    """Draws the run's events into its frame until the run is done; a rerun ends this early, not the run.

    With `first_words_only` it returns at the first words: by then the user's message is saved, so
    a new conversation's page can rerun to list and title it, and attach to the same reply again.
    """
    progress = _Progress(backlog=len(reply.run.text))
    for event in reply.run.events(heartbeat=HEARTBEAT):
        if event is None:
            _idle(reply, progress)
        elif event.kind is EventKind.DONE:
            return
        else:
            _apply(reply, progress, event)
            if reply.first_words_only and progress.text:
                return


def _apply(reply: LiveReply, progress: _Progress, event: RunEvent) -> None:
    kind, data = event.kind, event.data
    if kind is EventKind.DELTA:
        progress.text += data["text"]
        progress.dirty = True
        caught_up = len(progress.text) >= progress.backlog
        if caught_up and time.monotonic() - progress.drawn_at >= REDRAW_EVERY:
            _draw(reply, progress)
    elif kind is EventKind.WAITING:
        progress.waiting = data.get("reason") or WAITING
        if not progress.text:
            _waiting_line(reply, progress.waiting, _elapsed(progress))
    elif kind is EventKind.NOTICE:
        reply.notices.info(data["text"], icon=":material/sync:")
    elif kind is EventKind.COMPLETED:
        progress.text = (data.get("message") or {}).get("content") or progress.text
        _draw(reply, progress)
    elif kind is EventKind.ERROR:
        if progress.dirty:
            _draw(reply, progress)
        reply.line.error(data["message"], icon=":material/error:")


def _idle(reply: LiveReply, progress: _Progress) -> None:
    """A silent moment: draw what is pending, tick the waiting line, and let Streamlit end this run if asked."""
    if progress.dirty:
        _draw(reply, progress)
    elif not progress.text and _elapsed(progress) != progress.seconds_shown:
        progress.seconds_shown = _elapsed(progress)
        _waiting_line(reply, progress.waiting, progress.seconds_shown)
    st.session_state.get(_TICK)  # a Streamlit call: where a pending rerun or stop takes over


def _draw(reply: LiveReply, progress: _Progress) -> None:
    if progress.text:
        reply.text.markdown(shown_text(progress.text))  # the saved reply's rules: no HTML, no images fetched
        reply.line.empty()
    progress.drawn_at, progress.dirty = time.monotonic(), False


def _waiting_line(reply: LiveReply, reason: str, seconds: int) -> None:
    reply.line.caption(f":material/hourglass_top: {reason}" + (f" · {seconds} s" if seconds else ""))


def _elapsed(progress: _Progress) -> int:
    return int(time.monotonic() - progress.since)
