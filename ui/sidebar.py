"""The conversation sidebar shared by every page: new chat, search, the list, pin, rename and delete.

Pinned conversations come first in the list (the catalog orders them) and carry a pin mark.

A conversation writing a reply right now (in this process or on another server) is marked in its
row. While one is, a small fragment looks again every few seconds and redraws the page when that
changes, so a reply that finishes in the background is not left marked.

On a narrow screen the sidebar covers the page, so choosing a conversation (or a new chat) closes it.
"""
from __future__ import annotations

import streamlit as st

from core.chat import ChatService, ConversationSummary
from core.text import TITLE_CHARS
from ui import nav
from ui.dialogs import confirm_or_cancel
from ui.format import clip, escape_markdown, relative_time

PAGE_SIZE = 20
SEARCH_PAUSE = "300ms"  # search as you type: Streamlit's own debounce (text_input live=)
HIT_COUNT = 10  # message hits shown above the title list while searching
REPLY_POLL = 2  # seconds between looks at which listed conversations are still replying
REPLYING = ":material/hourglass_top: replying…"
PINNED = ":material/push_pin:"  # the mark of a pinned row, before its title
THEIRS = ":material/visibility:"  # the mark of another user's conversation in an admin's listing
_SHOWN = "sidebar_shown"  # how many conversations the list shows ("Show more" adds a page)
_DIALOG = "sidebar_dialog"  # ("rename" | "delete", partition key, title) while a dialog is open
_PIN = "sidebar_pin"  # (partition key, pinned) chosen in a row menu, done on the next run
_CHOSEN = "sidebar_chosen"  # how many choices were made: set by a choice, the next run closes the sidebar
_CLOSED = "sidebar_closed"  # the choice the sidebar was last closed for
NARROW = "(max-width: 768px)"  # Streamlit's own breakpoint: below it the sidebar overlays the page
# Our own fixed script (no user content): clicks Streamlit's collapse button, on narrow screens only.
CLOSE_ON_NARROW = """<script>/* choice {n} */
if (window.matchMedia("%s").matches) {
  const button = document.querySelector('[data-testid="stSidebarCollapseButton"] button');
  if (button) button.click();
}
</script>""" % NARROW


def render(service: ChatService, current_key: str | None) -> None:
    """Draws the sidebar; clicks change the URL's selection (callbacks), so the page stays put."""
    with st.sidebar:
        if st.button("New chat", type="primary", icon=":material/add:", width="stretch", on_click=_chosen):
            nav.open_new_chat(service)
        search = st.text_input("Search conversations", key="sidebar_search", placeholder="Words in messages or titles…",
                               on_change=_reset_paging, live=SEARCH_PAUSE)
        hits = st.container()  # drawn under the search box, filled once the admin switch below is read
        if (pin := st.session_state.pop(_PIN, None)) is not None:
            service.pin(*pin)
        everyone = _everyone(service)
        if search.strip():
            with hits:
                _hits(service.search(search, HIT_COUNT, everyone=everyone))
        shown = st.session_state.get(_SHOWN, PAGE_SIZE)
        items = service.conversations(search=search, limit=shown + 1, everyone=everyone)
        _caption(items, search)
        keys = [item.partition_key for item in items[:shown]]
        replying = service.replying(keys) if keys else set()
        others = service.people({i.owner for i in items[:shown] if i.owner != service.user.subject}) if everyone else {}
        for item in items[:shown]:
            _row(item, item.partition_key == current_key, item.partition_key in replying, others.get(item.owner))
        if len(items) > shown:
            st.button("Show more", icon=":material/expand_more:", on_click=_show_more, width="stretch")
        if replying:
            st.fragment(_watch_replies, run_every=REPLY_POLL)(service, keys, replying)
    _open_dialog(service)
    _close_after_a_choice()


def _everyone(service: ChatService) -> bool:
    """An admin's switch to list every user's conversations (read-only); nobody else has it."""
    if not service.user.admin or service.settings.auth == "none":
        return False
    return st.toggle("Everyone's conversations", key="sidebar_everyone", on_change=_reset_paging,
                     help="As an admin you can read every user's conversations; you cannot change them.")


def _hits(hits: list) -> None:
    """Message hits, best first: title and the snippet, escaped, its matches in bold (never HTML)."""
    found = [h for h in hits if h.index is not None]
    if not found:
        return
    st.caption(f"In messages: {len(found)} conversation{'s' if len(found) != 1 else ''}")
    for n, hit in enumerate(found):
        label = f"**{escape_markdown(clip(hit.title or 'Untitled', TITLE_CHARS))}**  \n{_marked(hit.snippet, hit.spans)}"
        st.button(label, key=f"sidebar_hit_{n}_{hit.conversation_id}", width="stretch",
                  on_click=_open_hit, args=(hit.conversation_id, hit.app_id, hit.index))


def _marked(snippet: str, spans: tuple) -> str:
    """The snippet as Markdown: every part escaped, each match in bold."""
    parts, last = [], 0
    for start, end in spans:
        parts += [escape_markdown(snippet[last:start]), "**", escape_markdown(snippet[start:end]), "**"]
        last = end
    return " ".join(("".join(parts) + escape_markdown(snippet[last:])).split())


def _open_hit(partition_key: str, app_id: str | None, index: int | None) -> None:
    _chosen(partition_key)
    nav.select(partition_key, app_id, message=index)


def _chosen(partition_key: str | None = None) -> None:
    """A conversation was picked (or a new chat): select it, and close the sidebar on the next run."""
    if partition_key is not None:
        nav.select(partition_key)
    st.session_state[_CHOSEN] = st.session_state.get(_CHOSEN, 0) + 1


def _close_after_a_choice() -> None:
    """Streamlit has no call to close the sidebar: a tiny script clicks its collapse button, once per choice
    (the number makes every script new, so the browser runs it again for the next choice)."""
    chosen = st.session_state.get(_CHOSEN, 0)
    if chosen and st.session_state.get(_CLOSED) != chosen:
        st.session_state[_CLOSED] = chosen
        st.html(CLOSE_ON_NARROW.replace("{n}", str(chosen)), unsafe_allow_javascript=True)


def _watch_replies(service: ChatService, keys: list[str], replying: set[str]) -> None:
    """Runs every REPLY_POLL seconds while a listed conversation replies; redraws the page when that changes.

    A timed fragment run never interrupts a page that is following a reply: Streamlit queues it.
    """
    if service.replying(keys) != replying:
        st.rerun()


def _caption(items: list[ConversationSummary], search: str) -> None:
    if not items:
        st.caption("No conversation title matches this search." if search.strip()
                   else "No saved conversations yet. Send a message to start one.")
    elif search.strip():
        st.caption("Conversations whose title matches")
    else:
        st.caption("Recent conversations")


def _row(item: ConversationSummary, is_current: bool, replying: bool, owner: str | None = None) -> None:
    """One conversation: a button to open it (marked while it replies or pinned), and a menu to pin, rename
    or delete it; `owner` names whose it is when it is someone else's (an admin's read-only listing)."""
    row = "conv_row_current" if is_current else f"conv_row_{item.partition_key}"
    when = f":small[:gray[{relative_time(item.updated_at)}]]"
    if replying:
        when += f" :small[:orange[{REPLYING}]]"
    if owner is not None:
        when += f" :small[:violet[{THEIRS} {escape_markdown(clip(owner, 40))}]]"
    with st.container(horizontal=True, key=row + ("_replying" if replying else ""), vertical_alignment="center",
                      gap="small"):
        label = f"{PINNED + ' ' if item.pinned else ''}{escape_markdown(clip(item.title, 30))}  \n{when}"
        st.button(label, key=f"open_{item.partition_key}", type="secondary" if is_current else "tertiary",
                  width="stretch", on_click=_chosen, args=(item.partition_key,),
                  help=f"{clip(item.title, 200)} · {item.message_count} messages"
                       + (" · writing a reply now" if replying else ""))
        if owner is not None:
            return  # someone else's: nothing to change
        if st.session_state.get(_DIALOG) is not None:
            return  # no row menu behind a dialog (its state alone did not always close it: a slow run kept it open)
        # A keyed popover that tracks its state, so choosing Rename or Delete can close it behind the dialog.
        menu = f"conv_menu_{item.partition_key}"
        with st.popover("", icon=":material/more_vert:", type="tertiary", help="Pin, rename or delete", key=menu,
                        on_change="rerun"):
            st.button("Unpin" if item.pinned else "Pin", key=f"pin_{item.partition_key}",
                      icon=":material/keep_off:" if item.pinned else PINNED,
                      on_click=_pin, args=(item.partition_key, not item.pinned, menu))
            st.button("Rename", key=f"rename_{item.partition_key}", icon=":material/edit:",
                      on_click=_ask, args=("rename", item.partition_key, item.title, menu))
            st.button("Delete", key=f"delete_{item.partition_key}", icon=":material/delete:",
                      on_click=_ask, args=("delete", item.partition_key, item.title, menu))


def _reset_paging() -> None:
    st.session_state[_SHOWN] = PAGE_SIZE


def _show_more() -> None:
    st.session_state[_SHOWN] = st.session_state.get(_SHOWN, PAGE_SIZE) + PAGE_SIZE


def _ask(kind: str, partition_key: str, title: str, menu: str) -> None:
    """Opens the dialog, and closes the row menu it was chosen from (it stayed open behind the dialog)."""
    st.session_state[_DIALOG] = (kind, partition_key, title)
    st.session_state[menu] = False


def _pin(partition_key: str, pinned: bool, menu: str) -> None:
    """Pins or unpins at once (nothing to confirm), and closes the row menu: the row moves."""
    st.session_state[_PIN] = (partition_key, pinned)
    st.session_state[menu] = False


def _close() -> None:
    st.session_state.pop(_DIALOG, None)


def _open_dialog(service: ChatService) -> None:
    """Dialogs open from a session flag (set in a callback), so every rerun redraws them until closed."""
    pending = st.session_state.get(_DIALOG)
    if pending is None:
        return
    kind, partition_key, title = pending
    (_rename_dialog if kind == "rename" else _delete_dialog)(service, partition_key, title)


@st.dialog("Rename conversation", on_dismiss=_close)
def _rename_dialog(service: ChatService, partition_key: str, title: str) -> None:
    new_title = st.text_input("New name", value=title, max_chars=TITLE_CHARS, key=f"rename_input_{partition_key}")
    st.caption("Leave it empty to name the conversation after its first message again.")
    choice = confirm_or_cancel("Save", "rename_save")
    if choice:
        service.rename(partition_key, new_title)
    if choice is not None:
        _close()
        st.rerun()


@st.dialog("Delete conversation?", on_dismiss=_close)
def _delete_dialog(service: ChatService, partition_key: str, title: str) -> None:
    st.markdown(f"**{escape_markdown(clip(title, 80))}** and all its branches and history will be deleted. "
                "This cannot be undone.")
    choice = confirm_or_cancel("Delete", "delete_confirm", icon=":material/delete:")
    if choice:
        service.delete(partition_key)
        nav.forget(partition_key)
        if st.query_params.get("c") == partition_key:
            nav.open_new_chat(service)
    if choice is not None:
        _close()
        st.rerun()
