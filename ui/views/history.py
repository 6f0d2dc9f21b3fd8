"""History page: browse a conversation's persisted Burr snapshots, see what each step changed, fork.

Only one page of snapshot metadata (50 rows) and the selected snapshot (`service.snapshot`: its
state, the one before it, what changed and what runs next) are read per run, so long conversations
open as fast as short ones. A failed step shows the reason saved with it, as the user was told.
"""
from __future__ import annotations

import json
import math
from functools import partial
from typing import Any

import pandas as pd
import streamlit as st

from core.chat import BranchSummary, ChatService, SnapshotSummary, SnapshotView
from core.history import StateDiff, highlighted_graph
from ui import nav, sidebar
from ui.format import clip, escape_markdown, short_id
from ui.messages import render_message
from ui.services import get_service

PAGE_ROWS = 50
BURR_UI = "http://localhost:7241"


def main() -> None:
    st.set_page_config(layout="wide")
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
        return
    st.caption(f"**{escape_markdown(clip(summary.title, 100))}** · {summary.message_count} messages · "
               "pick another conversation in the sidebar.")
    app_id = pick_branch(service, key, selection.app_id)
    browse(service, key, app_id)


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
    st.caption(f"Burr's own tracking UI has this run too: start it with `{where}`, then open "
               f"[{settings.tracker_project} / this run]({BURR_UI}/project/{settings.tracker_project}/{key}/{app_id}).")


def browse(service: ChatService, key: str, app_id: str) -> None:
    """The paged snapshot table, then the selected snapshot's graph, what changed and full state."""
    rows = _snapshot_table(service, key, app_id)
    if not rows:
        st.info("This branch has no saved steps.")
        return
    seq = _pick_snapshot(app_id, rows)
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


def _snapshot_table(service: ChatService, key: str, app_id: str) -> list[SnapshotSummary]:
    """One page of the branch's snapshots (metadata only); the page box sits under the table."""
    total = service.snapshot_count(key, app_id)
    pages = max(1, math.ceil(total / PAGE_ROWS))
    st.markdown(f"**{total} snapshots** on this branch" + (f", {PAGE_ROWS} per page" if pages > 1 else ""))
    table_slot = st.container()
    page = 1
    if pages > 1:
        page = st.number_input(f"Page (of {pages})", 1, pages, 1, key=f"history_page_{app_id}", width=200)
    rows = service.snapshots(key, app_id, offset=(page - 1) * PAGE_ROWS, limit=PAGE_ROWS)
    frame = pd.DataFrame([{"Step": r.sequence_id, "Action": r.position, "Status": r.status,
                           "Saved (UTC)": r.created_at.strftime("%b %d %H:%M:%S"), "Bytes": r.stored_bytes,
                           "Error": r.error or ""}
                          for r in rows])
    table = f"history_table_{app_id}_{page}"
    with table_slot:
        st.dataframe(frame, hide_index=True, width="stretch", height=min(320, 38 + 35 * len(rows)),
                     key=table, on_select=partial(_table_clicked, table, app_id, [r.sequence_id for r in rows]),
                     selection_mode="single-row",
                     column_config={"Bytes": st.column_config.NumberColumn(help="Stored size of this delta snapshot"),
                                    "Error": st.column_config.TextColumn(help="Why a failed step failed, as the "
                                                                              "user was told")})
    return rows


def _table_clicked(table: str, app_id: str, sequence_ids: list[int]) -> None:
    """A row click selects that snapshot (the select box below is the control AppTest can drive)."""
    picked = st.session_state[table]["selection"]["rows"]
    if picked:
        st.session_state[f"history_step_{app_id}"] = sequence_ids[picked[0]]


def _pick_snapshot(app_id: str, rows: list[SnapshotSummary]) -> int:
    widget = f"history_step_{app_id}"
    ids = [r.sequence_id for r in rows]
    if st.session_state.get(widget) not in ids:
        st.session_state[widget] = ids[-1]
    by_id = {r.sequence_id: r for r in rows}
    return st.selectbox("Snapshot", ids, key=widget,
                        format_func=lambda s: f"Step {s} · {by_id[s].position} · {by_id[s].status}")


def _graph(snapshot: SnapshotView) -> None:
    row, upcoming = snapshot.summary, snapshot.next_action
    st.markdown(f"**Step {row.sequence_id}: `{row.position}`** ({row.status}) · next: `{upcoming}`")
    if row.error:
        st.error(f"This step failed: {row.error}", icon=":material/error:")
    elif row.status == "failed":
        st.error("This step failed (no reason was saved with it).", icon=":material/error:")
    st.graphviz_chart(highlighted_graph(row.position, upcoming), width="stretch")
    st.caption("Green: the action this snapshot was saved after. Yellow: the action that runs next. "
               "Dashed edges carry their conditions.")


def _actions(service: ChatService, key: str, app_id: str, row: SnapshotSummary) -> None:
    with st.container(horizontal=True, vertical_alignment="center"):
        if st.button("Fork from here", type="primary", icon=":material/call_split:",
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
