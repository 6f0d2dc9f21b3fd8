"""History page: browse a conversation's persisted Burr snapshots, see what each step changed, fork.

Only one page of snapshot metadata (PAGE_ROWS rows) and the selected snapshot (`service.snapshot`:
its state, the one before it, what changed and what runs next) are read per run, so long conversations
open as fast as short ones. A failed step shows the reason saved with it, as the user was told.

One step is selected per branch (`history_step_<app id>` in session state, the latest by default);
the table's ticked row, the Snapshot box and the "Go to step" box all follow it, and each of them
changes it, so they never disagree. The table page is always the one holding that step.
"""
from __future__ import annotations

import dataclasses
import json
import math
from functools import partial
from typing import Any

import graphviz
import pandas as pd
import streamlit as st

from core.chat import BranchSummary, ChatService, SnapshotSummary, SnapshotView
from core.history import CURRENT_FILL, NEXT_FILL, StateDiff, highlighted_graph
from ui import nav, sidebar, transfer_view, tree_view
from ui.format import clip, escape_markdown, short_id
from ui.messages import render_message
from ui.services import get_service

PAGE_ROWS = 10  # every row fits in the table without scrolling, so the ticked one is always in view
ROW_PX, HEADER_PX = 35, 38


def main() -> None:
    service = get_service()
    selection = nav.current(service, create=False)
    sidebar.render(service, selection.partition_key)
    st.title("History", anchor=False)
    if selection.problem:
        nav.show_problem(service, selection)
    key = selection.partition_key or _most_recent(service)
    summary = selection.summary or (service.conversation(key) if key else None)
    if summary is None:
        _nothing_yet(key)
        transfer_view.importer(service)
        return
    title = st.empty()  # the caption names the branch's message count, known once the branch is picked
    app_id = pick_branch(service, key, selection.app_id)
    count = summary.message_count if app_id == summary.latest_app_id else len(service.open(key, app_id).messages)
    title.caption(f"**{escape_markdown(clip(summary.title, 100))}** · {count} messages on this branch · "
                  "pick another conversation in the sidebar.")
    browse(service, key, app_id)
    transfer_view.render(service, key, app_id)  # download buttons and the importer


def _most_recent(service: ChatService) -> str | None:
    latest = service.conversations(limit=1)
    if latest:
        nav.select(latest[0].partition_key)
        return latest[0].partition_key
    return None


def _nothing_yet(key: str | None) -> None:
    st.info("No saved steps yet: send a message in Chat, and every step of the turn shows up here.",
            icon=":material/history:")
    st.page_link(nav.CHAT_PAGE, label="Go to Chat", icon=":material/chat:",
                 query_params={"c": key} if key else None)


def pick_branch(service: ChatService, key: str, wanted: str | None) -> str:
    """The branch (Burr app_id) to browse: a select box when the conversation has been forked."""
    branches = service.branches(key)
    ids = [b.app_id for b in branches]
    chosen = wanted if wanted in ids else ids[0]
    if len(branches) > 1:
        labels = {b.app_id: _branch_label(b, b.app_id == ids[0]) for b in branches}
        widget = f"history_branch_{key}"
        st.session_state[widget] = chosen  # the URL decides; the box follows it
        st.selectbox("Branch", ids, format_func=labels.__getitem__, key=widget,
                     on_change=lambda: nav.select(key, st.session_state[widget]))
        with st.expander(f"Branch tree ({len(branches)} branches)", icon=":material/account_tree:"):
            tree_view.render(service, key, chosen)
    else:
        st.caption(f"Branch `{chosen}` (the only one: fork from any step to start another)")
    _burr_link(service, key, chosen)
    return chosen


def _branch_label(branch: BranchSummary, latest: bool) -> str:
    origin = (f"forked from {short_id(branch.forked_from_app_id)} @ step {branch.forked_from_sequence_id}"
              if branch.forked_from_app_id else "original")
    return f"{short_id(branch.app_id)} · {origin} · last step {branch.last_sequence_id}" + (" · latest" if latest else "")


def _burr_link(service: ChatService, key: str, app_id: str) -> None:
    settings = service.settings
    if not settings.tracking_enabled:
        return
    where = f"BURR_PATH={settings.tracker_dir} burr" if settings.tracker_dir else "burr"
    run = f"{settings.burr_ui_url}/project/{settings.tracker_project}/{key}/{app_id}"
    st.caption(f"Burr's own tracking UI has this run too: start it with `{where}`, then open "
               f"[{settings.tracker_project} / this run]({run}).")


@dataclasses.dataclass(frozen=True)
class Steps:
    """What the navigator needs to know of a branch: how many steps, the first and the last one."""

    total: int
    first: int
    last: int


def browse(service: ChatService, key: str, app_id: str) -> None:
    """The navigator and the page of the table holding the selected step, then that step's details."""
    steps = _steps(service, key, app_id)
    if steps is None:
        st.info("This branch has no saved steps.")
        return
    seq, offset, rows = _selected_page(service, key, app_id, steps)
    _navigator(service, key, app_id, steps, seq, offset, rows)
    _snapshot_table(app_id, rows, seq, tree_view.ratings_by_step(service, key, app_id))
    snapshot = service.snapshot(key, app_id, seq)
    if snapshot is None:  # deleted or cut off since the table was read
        st.warning(f"Step {seq} of this branch is no longer stored.", icon=":material/history:")
        return
    _actions(service, key, app_id, snapshot.summary)
    graph, details = st.columns(2, gap="large")
    with graph:
        _graph(snapshot)
    with details:
        changes, full = st.tabs(["What changed", "Full state"])
        with changes:
            render_diff(snapshot.diff, first=snapshot.previous is None)
        with full:
            st.json(snapshot.state, expanded=2)


def _steps(service: ChatService, key: str, app_id: str) -> Steps | None:
    total = service.snapshot_count(key, app_id)
    first = service.snapshots(key, app_id, limit=1)
    last = service.snapshots(key, app_id, limit=1, newest_first=True)
    return Steps(total, first[0].sequence_id, last[0].sequence_id) if total and first and last else None


def _step_key(app_id: str) -> str:
    return f"history_step_{app_id}"


def _selected_page(service: ChatService, key: str, app_id: str,
                   steps: Steps) -> tuple[int, int, list[SnapshotSummary]]:
    """The selected step (the latest unless one was chosen), its offset, and the table page holding it.

    A step number that is not stored (typed into "Go to step") selects the next stored one.
    """
    wanted = st.session_state.get(_step_key(app_id), steps.last)
    offset = _offset_of(service, key, app_id, min(max(wanted, steps.first), steps.last), steps)
    page_start, page_end = _page_bounds(offset, steps.total)
    rows = service.snapshots(key, app_id, offset=page_start, limit=page_end - page_start)
    ids = [r.sequence_id for r in rows]
    seq = wanted if wanted in ids else ids[min(offset - page_start, len(ids) - 1)]
    st.session_state[_step_key(app_id)] = seq
    return seq, page_start + ids.index(seq), rows


def _page_bounds(offset: int, total: int) -> tuple[int, int]:
    """The table page holding `offset`: pages are counted from the newest step, so the page that
    opens first is full and only the oldest one may be short."""
    from_end = (total - 1 - offset) // PAGE_ROWS
    end = total - from_end * PAGE_ROWS
    return max(0, end - PAGE_ROWS), end


def _offset_of(service: ChatService, key: str, app_id: str, seq: int, steps: Steps) -> int:
    """Where `seq` sits in the branch (steps are numbered one by one, so the first guess is nearly
    always right; otherwise a binary search over offsets, a few one-row reads)."""
    guess = seq - steps.first
    if 0 <= guess < steps.total and _seq_at(service, key, app_id, guess) == seq:
        return guess
    low, high = 0, steps.total - 1
    while low < high:  # the first offset whose step is >= seq
        middle = (low + high) // 2
        if _seq_at(service, key, app_id, middle) < seq:
            low = middle + 1
        else:
            high = middle
    return low


def _seq_at(service: ChatService, key: str, app_id: str, offset: int) -> int:
    found = service.snapshots(key, app_id, offset=offset, limit=1)
    return found[0].sequence_id if found else -1


def _navigator(service: ChatService, key: str, app_id: str, steps: Steps, seq: int, offset: int,
               rows: list[SnapshotSummary]) -> None:
    """How many steps there are, and ways to any of them: first, a page back or on, latest, a number."""
    pages = max(1, math.ceil(steps.total / PAGE_ROWS))
    page = pages - (steps.total - 1 - offset) // PAGE_ROWS
    st.markdown(f"**{steps.total} snapshots** on this branch (steps {steps.first}–{steps.last})"
                + (f" · page {page} of {pages}, {PAGE_ROWS} per page" if pages > 1 else ""))
    move = partial(_move_to_offset, service, key, app_id)
    with st.container(horizontal=True, vertical_alignment="bottom", key=f"history_nav_{app_id}"):
        st.button("First", icon=":material/first_page:", key=f"history_first_{app_id}", disabled=seq == steps.first,
                  on_click=_select, args=(app_id, steps.first), help=f"Step {steps.first}, the branch's first")
        st.button("Earlier", icon=":material/chevron_left:", key=f"history_earlier_{app_id}", disabled=page == 1,
                  on_click=move, args=(max(0, offset - PAGE_ROWS),), help=f"{PAGE_ROWS} steps back")
        st.button("Later", icon=":material/chevron_right:", key=f"history_later_{app_id}", disabled=page == pages,
                  on_click=move, args=(min(steps.total - 1, offset + PAGE_ROWS),), help=f"{PAGE_ROWS} steps on")
        st.button("Latest", icon=":material/last_page:", key=f"history_latest_{app_id}", disabled=seq == steps.last,
                  on_click=_select, args=(app_id, steps.last), help=f"Step {steps.last}, the newest")
        goto = f"history_goto_{app_id}"
        st.session_state[goto] = seq  # follows the selection; typing a number changes it
        st.number_input("Go to step", steps.first, steps.last, key=goto, step=1, width=170,
                        on_change=lambda: _select(app_id, st.session_state[goto]))
        by_id = {r.sequence_id: r for r in rows}
        box = f"history_snapshot_{app_id}"
        st.session_state[box] = seq
        st.selectbox("Snapshot", list(by_id), key=box, width=340,
                     format_func=lambda s: f"Step {s} · {by_id[s].position} · {by_id[s].status}",
                     on_change=lambda: _select(app_id, st.session_state[box]))


def _select(app_id: str, seq: int) -> None:
    st.session_state[_step_key(app_id)] = int(seq)


def _move_to_offset(service: ChatService, key: str, app_id: str, offset: int) -> None:
    """Earlier / Later: the step that many rows away (a callback, so the page draws it at once)."""
    found = service.snapshots(key, app_id, offset=offset, limit=1)
    if found:
        _select(app_id, found[0].sequence_id)


def _snapshot_table(app_id: str, rows: list[SnapshotSummary], seq: int, ratings: dict[int, str]) -> None:
    """The page of steps; its ticked row is the selected step, and ticking another selects that one."""
    frame = pd.DataFrame([{"Step": r.sequence_id, "Action": r.position, "Status": r.status,
                           "Saved (UTC)": r.created_at.strftime("%b %d %H:%M:%S"), "Bytes": r.stored_bytes,
                           "Error": r.error or "", "Feedback": ratings.get(r.sequence_id, "")}
                          for r in rows])
    ids = [r.sequence_id for r in rows]
    # A new table per selected step: a browser keeps the ticks of a table it already shows, whatever
    # the server sets, so a step picked elsewhere would leave the old row ticked.
    table = f"history_table_{app_id}_{seq}"
    st.dataframe(frame, hide_index=True, width="stretch", height=HEADER_PX + ROW_PX * len(rows) + 2,
                 key=table, on_select=partial(_table_clicked, table, app_id, ids), selection_mode="single-row",
                 selection_default={"selection": {"rows": [ids.index(seq)]}},
                 column_config={"Bytes": st.column_config.NumberColumn(help="Stored size of this delta snapshot"),
                                "Error": st.column_config.TextColumn(help="Why a failed step failed, as the "
                                                                          "user was told"),
                                "Feedback": st.column_config.TextColumn(help="The rating of the reply this step "
                                                                             "wrote, given in Chat")})


def _table_clicked(table: str, app_id: str, sequence_ids: list[int]) -> None:
    """A ticked row selects its step; unticking it keeps the step (the row is ticked again)."""
    picked = st.session_state[table]["selection"]["rows"]
    if picked:
        _select(app_id, sequence_ids[picked[0]])


def _graph(snapshot: SnapshotView) -> None:
    row, upcoming = snapshot.summary, snapshot.next_action
    st.markdown(f"**Step {row.sequence_id}: `{row.position}`** ({row.status}) · next: `{upcoming}`")
    if row.error:
        st.error(f"This step failed: {row.error}", icon=":material/error:")
    elif row.status == "failed":
        st.error("This step failed (no reason was saved with it).", icon=":material/error:")
    st.graphviz_chart(marked_graph(row.position, upcoming), width="stretch")
    st.caption("Green, thick border: the action this snapshot was saved after. Yellow: the action that runs "
               "next. Dashed edges carry their conditions.")


def marked_graph(current: str | None, upcoming: str | None) -> graphviz.Digraph:
    """The chat graph with the marks inside the nodes (a label beside a node read as an edge's)."""
    dot = highlighted_graph(None, None)
    if upcoming and upcoming != current:
        dot.node(upcoming, label=_node_label(upcoming, "next"), fillcolor=NEXT_FILL, penwidth="2")
    if current:
        mark = "this step" if upcoming != current else "failed here · runs again next"
        dot.node(current, label=_node_label(current, mark), fillcolor=CURRENT_FILL, penwidth="3")
    return dot


def _node_label(name: str, mark: str) -> str:
    """The action's name with the mark on a second line (plain text: each line is centred by the
    browser, where an HTML-like label is placed with Graphviz's font metrics and drifts)."""
    return f"{name}\\n{mark}"


def _actions(service: ChatService, key: str, app_id: str, row: SnapshotSummary) -> None:
    with st.container(horizontal=True, vertical_alignment="center"):
        if st.button("Fork from here", type="primary", icon=":material/call_split:", disabled=service.read_only(key),
                     help=f"Start a new branch from step {row.sequence_id}; this branch stays as it is."):
            new_branch = service.fork(key, app_id, row.sequence_id)
            st.switch_page(nav.CHAT_PAGE, query_params={"c": key, "b": new_branch})
        st.page_link(nav.CHAT_PAGE, label="Open this branch in Chat", icon=":material/chat:",
                     query_params={"c": key, "b": app_id})


def render_diff(diff: StateDiff, first: bool) -> None:
    """Keys added / changed / removed, and the messages appended to chat_history, readable at a glance."""
    if first:
        st.caption("The first snapshot of this branch: everything in it is new.")
    if diff.empty:
        st.caption("Nothing changed in the state except Burr's own step counter.")
    for name, items in diff.appended.items():
        st.markdown(f":green[**+{len(items)}**] appended to `{name}`")
        for item in items:
            if isinstance(item, dict):
                render_message(item)
            else:
                st.code(_json(item), language="json")
    for name, value in diff.added.items():
        st.markdown(f":green[**added**] `{name}`")
        st.code(_json(value), language="json", wrap_lines=True)
    for name, (old, new) in diff.changed.items():
        st.markdown(f":orange[**changed**] `{name}`")
        st.caption("Before")
        st.code(_json(old), language="json", wrap_lines=True)
        st.caption("After")
        st.code(_json(new), language="json", wrap_lines=True)
    for name, value in diff.removed.items():
        st.markdown(f":red[**removed**] `{name}` (was `{clip(_json(value), 80)}`)")


def _json(value: Any, limit: int = 4000) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "\n… (cut; see Full state)"


main()
