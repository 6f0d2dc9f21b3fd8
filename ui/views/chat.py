"""Chat page: a conversation's saved messages, and its reply, live, whichever tab or rerun started it.

Sending starts a run in the service (core/runs.py) and the page attaches to it (ui/live.py): the
user's message at once, then the reply as it streams, then a rerun so everything shown comes from
the database. Any rerun (a click, a search, another conversation, History, a reload, a closed tab)
only ends this page's watching; the run goes on and saves its reply, and a page that opens the
conversation meanwhile, in this tab or another, attaches to it again. Only Stop stops it.
What a run leaves to say that is not saved with the conversation (a notice; the error of a message
that could not be saved) is read from the run itself, which this session remembers by id.
"""
from __future__ import annotations

import logging

import streamlit as st

from core.chat import BusyError, ChatService, ConversationView, EventKind, InputError, Run, TurnOutcome
from core.facts import describe
from ui import live, message_actions, nav, sidebar
from ui.format import clip, escape_markdown, short_id
from ui.messages import render_messages
from ui.nav import Selection
from ui.services import get_service

# Streamlit runs a page as __main__, so the logger is named for the module it is.
log = logging.getLogger("ui.views.chat")
PLACEHOLDER = "Message Burrow…"
ELSEWHERE = "A reply is being written on another server…"
READ_ONLY = "Another user's conversation: as an admin you can read it, not change it."
LATEST = 50  # messages shown at first; "Show earlier messages" adds as many again
_SENT = "chat_sent"  # {"key", "run", "prompt"}: the latest run this session started
_DRAFT = "chat_draft"  # {"key", "reason", "text"}: a message that could not be sent, to edit and send again
_DRAFT_BOX = "chat_draft_text"  # the text area showing that draft
_SCROLLED = "chat_scrolled"  # (conversation, branch, message index) last scrolled to
# Our own fixed script (no user content; {hit} is an int): waits for the hit's message and centres it,
# and holds it there for a few seconds while the page settles (Streamlit keeps a chat scrolled to its bottom
# as content arrives until the user scrolls), unless the user scrolls first.
SCROLL_TO_TARGET = """<script>/* hit {hit} */
(function () {
  let moved = false;
  for (const kind of ["wheel", "touchstart", "pointerdown", "keydown"]) addEventListener(kind, () => { moved = true; }, {once: true});
  (function place(tries, held) {
    const target = document.querySelector(".st-key-chat_target");
    if (moved) return;
    if (target) {
      // A wheel event on the chat's scroller is how Streamlit learns to stop pinning it to the bottom.
      const scroller = target.closest('[data-testid="stAppScrollToBottomContainer"]');
      if (scroller) scroller.dispatchEvent(new WheelEvent("wheel", {deltaY: -1}));
      target.scrollIntoView({block: "center"});
    }
    if (target ? held < 100 : tries > 0) setTimeout(() => place(tries - 1, held + (target ? 1 : 0)), 100);
  })(100, 0);
})();
</script>"""


def main() -> None:
    service = get_service()
    selection = nav.current(service, create=True)
    sidebar.render(service, selection.partition_key)
    if selection.problem:
        nav.show_problem(service, selection)
    read_only = selection.summary is not None and service.read_only(selection.partition_key)
    prompt = st.chat_input(PLACEHOLDER, disabled=read_only)
    action = None if read_only else message_actions.take(selection.partition_key)
    kind = action["kind"] if action else None
    busy = _retry(service, selection) if kind == "retry" else None  # before open(): the view counts it as live
    message = prompt if prompt is not None else action["text"] if kind == "send" else None
    view = service.open(selection.partition_key, selection.app_id)
    header(service, selection, view, starting=message is not None)
    forked = _branch(service, selection, action) if kind in ("edit", "regenerate") else None
    shown = view.messages[:action["index"]] if forked else view.messages  # a new branch shares only these
    target = nav.target_message()
    target = target if target is not None and target < len(shown) else None
    start = _earlier(view, len(shown), target)
    if read_only:
        st.info(READ_ONLY, icon=":material/visibility:")
    render_messages(shown, view.unanswered, start=start, target=target,
                    below=None if read_only else lambda i, m: message_actions.render(service, view, i, m))
    _scroll_to_target(view, target)
    # The runs that were live when the view was read, even one that has ended since: its reply is
    # not in `view.messages`, and following an ended run replays it whole before the rerun.
    replies = [live.place(service, run) for run in view.live_runs]  # oldest first: the one streaming
    if message is not None:
        replies += _send(service, selection, view, message, queued=bool(replies))
    elif forked:
        replies += [live.place(service, forked, action["text"] if kind == "edit" else None)]
    if replies:
        for reply in replies:  # a second one waits for the first: the service runs them in turn
            live.follow(reply)
        # An edit or a regenerate shows its new branch; anything else keeps the URL as it was, so the
        # rerun draws the same frame (a changed header would shift every element below it).
        nav.select(selection.partition_key, forked.app_id if forked else selection.app_id)
        st.rerun()
    if busy:
        st.warning(busy, icon=":material/hourglass_top:")
    if view.replying_elsewhere:
        _wait_elsewhere(service, selection.partition_key)
    else:
        status(service, selection, view)
    _draft(selection, view)


def header(service: ChatService, selection: Selection, view: ConversationView, starting: bool = False) -> None:
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
    if not view.messages and view.run is None and not starting:
        st.markdown("#### What can I help with?")
        st.caption("Every step of this chat is saved as a Burr state snapshot: browse them in **History**, "
                   "and fork the conversation from any step.")


def _send(service: ChatService, selection: Selection, view: ConversationView, text: str,
          queued: bool = False) -> list[live.LiveReply]:
    """Starts the turn and draws its frame; a message that cannot be sent now is kept as a draft."""
    key = selection.partition_key
    try:
        run = service.send(key, text, selection.app_id, expected_messages=len(view.messages))
    except (InputError, BusyError) as exc:  # the user's to fix, or a moment to wait: INFO, without the text
        log.info("Message not sent on conversation %s: %s", key, exc)
        if text.strip():
            st.session_state[_DRAFT] = {"key": key, "reason": str(exc), "text": text}
            st.session_state[_DRAFT_BOX] = text
        else:
            st.warning(str(exc), icon=":material/edit_note:")
        return []
    _remember(run, text)
    fresh = selection.summary is None  # a new conversation: rerun at the first words to list it
    return [live.place(service, run, text, first_words_only=fresh, queued=queued)]


def _scroll_to_target(view: ConversationView, target: int | None) -> None:
    """Scrolls to the message a search hit opened, once per hit (a later rerun, such as sending, stays put)."""
    if target is None:
        return
    hit = (view.partition_key, view.app_id, target)
    if st.session_state.get(_SCROLLED) == hit:
        return
    st.session_state[_SCROLLED] = hit
    st.html(SCROLL_TO_TARGET.replace("{hit}", f"{target}"), unsafe_allow_javascript=True)


def _earlier(view: ConversationView, count: int, target: int | None = None) -> int:
    """The index of the first message shown: the latest LATEST, and more each time the user asks (and
    from the message a search hit points at, at least)."""
    key = f"chat_shown_{view.partition_key}_{view.app_id}"
    start = max(0, count - st.session_state.get(key, LATEST))
    if target is not None and target < start:
        st.session_state[key] = count - target
        start = target
    if start > 0:
        more = min(LATEST, start)
        st.button(f"Show {more} earlier messages", icon=":material/expand_less:", type="tertiary",
                  key="chat_show_earlier", help=f"{start:,} earlier messages are not shown",
                  on_click=_show_more, args=(key, more))
    return start


def _show_more(key: str, more: int) -> None:
    st.session_state[key] = st.session_state.get(key, LATEST) + more


def _branch(service: ChatService, selection: Selection, action: dict) -> Run | None:
    """Starts an edit or a regenerate on a new branch; None (with the reason shown) when it cannot start."""
    key, app_id, index = selection.partition_key, action["app_id"], action["index"]
    try:
        if action["kind"] == "edit":
            run = service.edit(key, app_id, index, action["text"] or "")
        else:
            run = service.regenerate(key, app_id, index)
    except (InputError, BusyError) as exc:
        log.info("%s not started on conversation %s: %s", action["kind"].capitalize(), key, exc)
        st.warning(str(exc), icon=":material/edit_note:")
        return None
    _remember(run, action["text"] if action["kind"] == "edit" else None)
    return run


def _retry(service: ChatService, selection: Selection) -> str | None:
    """Starts the retry of the failed step; the reason when the process has no room for it now."""
    try:
        _remember(service.retry(selection.partition_key, selection.app_id), None)
    except BusyError as exc:
        log.info("Retry not started on conversation %s: %s", selection.partition_key, exc)
        return str(exc)
    return None


def _remember(run: Run, prompt: str | None) -> None:
    st.session_state.pop(_DRAFT, None)
    st.session_state[_SENT] = {"key": run.partition_key, "run": run.id, "prompt": prompt}


@st.fragment(run_every=1)
def _wait_elsewhere(service: ChatService, partition_key: str) -> None:
    """Another server is writing the reply: look once a second, and show it once it is saved."""
    if partition_key not in service.replying([partition_key]):
        st.rerun()
    st.info(ELSEWHERE, icon=":material/hourglass_top:")
    st.button("Stop", icon=":material/stop_circle:", type="tertiary", key="chat_stop_elsewhere",
              help="Stops the reply on the server writing it; what arrived is kept, marked stopped.",
              on_click=service.stop_elsewhere, args=(partition_key,))


def status(service: ChatService, selection: Selection, view: ConversationView) -> None:
    """Under the messages: the last run's notices, and Retry / Continue when a turn did not finish."""
    notices, error = _last_run_says(service, selection.partition_key)
    for notice in notices:
        st.info(notice, icon=":material/sync:")
    if view.failed_step:
        st.error(view.failure or error or f"The last reply did not finish (the {view.failed_step} step failed).",
                 icon=":material/error:")
        if view.failure_facts:
            st.caption(describe(view.failure_facts))
        _action_button("Retry", selection.partition_key, view.app_id)
    elif view.pending_step:
        st.info(f"This branch stops in the middle of a turn (next step: `{view.pending_step}`). "
                "Continue to get the reply, or send a new message.", icon=":material/pause_circle:")
        _action_button("Continue", selection.partition_key, view.app_id)
    elif error:  # nothing was saved (the database went away, or another writer held on too long)
        sent = st.session_state.pop(_SENT)
        if sent.get("prompt"):
            st.session_state[_DRAFT] = {"key": sent["key"], "reason": error, "text": sent["prompt"]}
            st.session_state[_DRAFT_BOX] = sent["prompt"]
        else:
            st.error(error, icon=":material/error:")


def _last_run_says(service: ChatService, partition_key: str) -> tuple[list[str], str | None]:
    """The notices and the error of the latest run this session started here, once it is done."""
    sent = st.session_state.get(_SENT)
    run = service.run(sent["run"]) if sent and sent["key"] == partition_key else None
    if run is None or not run.done:
        return [], None
    events = [event for event in run.events() if event is not None]
    notices = [e.data["text"] for e in events if e.kind is EventKind.NOTICE]
    errors = [e.data["message"] for e in events if e.kind is EventKind.ERROR]
    failed = run.outcome == TurnOutcome.FAILED.value
    return notices, (errors[-1] if errors else "The message could not be sent.") if failed else None


def _draft(selection: Selection, view: ConversationView) -> None:
    """A message that could not be sent (too long, or Burrow busy), kept where it can be edited and sent."""
    draft = st.session_state.get(_DRAFT)
    if not draft or draft["key"] != selection.partition_key:
        return
    st.warning(draft["reason"], icon=":material/edit_note:")
    if _DRAFT_BOX not in st.session_state:  # the box was not shown on the last run (another conversation)
        st.session_state[_DRAFT_BOX] = draft["text"]
    st.text_area("Your message, not sent yet: edit it and send it again", key=_DRAFT_BOX, height=120,
                 on_change=_keep_draft)
    with st.container(horizontal=True):
        st.button("Send", type="primary", icon=":material/send:", key="chat_draft_send",
                  on_click=_send_draft, args=(selection.partition_key, view.app_id))
        st.button("Discard", type="tertiary", key="chat_draft_discard", on_click=_discard_draft)


def _keep_draft() -> None:
    st.session_state[_DRAFT]["text"] = st.session_state[_DRAFT_BOX]


def _send_draft(partition_key: str, app_id: str | None) -> None:
    text = st.session_state.get(_DRAFT_BOX) or st.session_state[_DRAFT]["text"]
    _discard_draft()
    message_actions.request("send", partition_key, app_id, text)


def _discard_draft() -> None:
    st.session_state.pop(_DRAFT, None)
    st.session_state.pop(_DRAFT_BOX, None)


def _action_button(label: str, partition_key: str, app_id: str | None) -> None:
    st.button(label, type="primary", icon=":material/refresh:", key=f"chat_{label.lower().replace(' ', '_')}",
              on_click=message_actions.request, args=("retry", partition_key, app_id))


main()
