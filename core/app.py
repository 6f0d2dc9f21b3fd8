"""The Burr state machine of a conversation and the builder that wires it to storage and tracking.

One conversation is one partition key; each branch of it (the original and every fork) is one
Burr app_id. `build_application` resumes the most recent branch, starts a new one, or forks.
"""
from __future__ import annotations

import dataclasses
import datetime
import functools
import importlib
import os
import threading
import traceback
import uuid
from collections.abc import Callable
from typing import Any

from burr.core import Action, Application, ApplicationBuilder, State, default, serde, when
from burr.core.graph import Graph, GraphBuilder
from burr.core.persistence import BaseStatePersister
from burr.tracking.client import LocalTrackingClient
from burr.tracking.common.models import EndEntryModel

from core import tracing
from core.actions import ai_response, human_input, safety_check, unsafe_response
from core.llm import ChatModel, OfflineModel
from core.safety import BlockedWordsPolicy, SafetyPolicy
from core.settings import DEFAULT_SYSTEM_PROMPT

ENTRYPOINT = "human_input"  # where every turn starts: the user's message
DEFAULT_STATE = {"chat_history": []}
_BRANCH_NAMESPACE = uuid.UUID("6f1d2c3e-8b0a-4f57-9d2e-5c1b7a9e0f42")


@functools.lru_cache(maxsize=256)
def _reads_checked(fn: Callable, declared_reads: tuple[str, ...]) -> None:
    """Burr checks an action's declared reads against its source (inspect.getsource and an AST
    walk) every time the action is bound, and every turn binds ai_response anew (its cancel event
    and notify): the answer for one function and one list of reads never changes in a process, so
    it is remembered. A violation raises, and an exception is not cached."""
    _burr_check_reads(fn, list(declared_reads))


_burr_action = importlib.import_module("burr.core.action")  # the module (burr.core.action is also a decorator)
_burr_check_reads = _burr_action._validate_declared_reads
_burr_action._validate_declared_reads = lambda fn, reads: _reads_checked(fn, tuple(reads or ()))


class ResumingTrackingClient(LocalTrackingClient):
    """Burr's local tracker, tolerant of resuming a branch it has never seen, and redacting secrets
    from the exceptions it records (a model server may quote the API key in its error, and the
    SDK's error is chained under ours, so it is in the traceback Burr writes to log.jsonl).

    Burr 0.43 hands the tracker a parent pointer with `app_id=None` whenever an app is loaded from the
    persister (not only when forked); the local tracker writes it into a new metadata file and its
    pydantic model rejects the None. That happens for every conversation a second server process (its
    own tracker folder), a cleared ~/.burr or a restored database brings in. No app id means no parent.
    """

    def __init__(self, *args: Any, redact: Callable[[str], str] = str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._redact = redact

    def post_run_step(self, *, state: State, action: Action, result: dict | None, sequence_id: int,
                      exception: Exception | None, **future_kwargs: Any) -> None:
        # Burr's own entry, with the exception text redacted before it is written.
        self._append_write_line(EndEntryModel(
            end_time=datetime.datetime.now(), action=action.name,
            result=serde.serialize(result, **self.serde_kwargs), sequence_id=sequence_id,
            exception=self._redact("".join(traceback.format_exception(exception))) if exception else None,
            state=state.serialize(**self.serde_kwargs)))

    def post_application_create(self, *, parent_pointer=None, **kwargs) -> None:
        if parent_pointer is not None and parent_pointer.app_id is None:
            parent_pointer = None
        super().post_application_create(parent_pointer=parent_pointer, **kwargs)

    def _ensure_dir_structure(self, app_id: str) -> None:
        # Burr checks, then creates: when several first turns start at once (a fresh install, a load
        # test) they race to create the project folder and all but one fail with FileExistsError.
        os.makedirs(os.path.join(self.storage_dir, app_id), exist_ok=True)


def first_branch_id(partition_key: str | None) -> str:
    """The app_id of a conversation's original branch: the same in every process."""
    return str(uuid.uuid5(_BRANCH_NAMESPACE, partition_key or ""))


def build_graph(
    model: ChatModel | None = None,
    *,
    policy: SafetyPolicy | None = None,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    cancel: threading.Event | None = None,
    notify: Callable[[str], None] | None = None,
) -> Graph:
    """The chat graph; without arguments it is fine for drawing (nothing is called then)."""
    return (
        GraphBuilder()
        .with_actions(
            human_input=human_input,
            safety_check=safety_check.bind(policy=policy or BlockedWordsPolicy()),
            ai_response=ai_response.bind(
                model=model or OfflineModel(), system_prompt=system_prompt, cancel=cancel or threading.Event(),
                notify=notify,
            ),
            unsafe_response=unsafe_response,
        )
        .with_transitions(
            ("human_input", "safety_check", default),
            ("safety_check", "ai_response", when(safe=True)),
            ("safety_check", "unsafe_response", when(safe=False)),
            (["ai_response", "unsafe_response"], "human_input", default),
        )
        .build()
    )


@dataclasses.dataclass(frozen=True)
class TurnShape:
    """What the rest of Burrow needs to know about the graph, read off it (never re-spelled elsewhere).

    A turn starts at the entrypoint; the reply actions are those that lead back to it; every other
    action is inside a turn, so a branch whose last completed step is one of them is midway through
    a turn (its reply is still coming, or was abandoned).
    """

    entrypoint: str
    actions: tuple[str, ...]
    reply_actions: frozenset[str]
    inside_turn: frozenset[str]
    after: dict[str, str]  # action -> the first action the graph may run after it

    @classmethod
    def of(cls, graph: Graph, entrypoint: str) -> "TurnShape":
        names = tuple(action.name for action in graph.actions)
        replies = frozenset(t.from_.name for t in graph.transitions if t.to.name == entrypoint)
        after: dict[str, str] = {}
        for transition in graph.transitions:
            after.setdefault(transition.from_.name, transition.to.name)
        return cls(entrypoint, names, replies, frozenset(names) - replies, after)

    def midway(self, position: str | None, status: str | None) -> bool:
        """A branch saved at this step has not finished its turn (a failed step never counts as finished)."""
        return position is not None and (status == "failed" or position in self.inside_turn)


def build_application(
    partition_key: str | None,
    *,
    persister: BaseStatePersister,
    llm: ChatModel,
    app_id: str | None = None,
    fork_from_app_id: str | None = None,
    fork_from_sequence_id: int | None = None,
    tracker_project: str | None = None,
    tracker_dir: str | None = None,
    policy: SafetyPolicy | None = None,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    cancel: threading.Event | None = None,
    resume: bool = True,
    redact: Callable[[str], str] = str,
    notify: Callable[[str], None] | None = None,
) -> Application:
    """Loads (or starts, or forks) one branch of a conversation, persisted after every step.

    `notify` hears, in words, what a reply is waiting for (the model client retrying).
    `resume=False` loads the branch's state but starts at the entrypoint (a new message after a
    failed or abandoned turn) instead of re-running the step that failed.

    With `app_id=None` the conversation's most recent branch is resumed, or a new one started.
    With `fork_from_app_id` a new branch starts from that branch's state at `fork_from_sequence_id`.
    """
    if fork_from_app_id is not None:
        app_id = app_id or str(uuid.uuid4())
    elif app_id is None:
        existing = persister.list_app_ids(partition_key)
        # A conversation's first branch has an id derived from it, so two tabs or servers starting the
        # same new conversation write one branch (and meet the conflict check) instead of forking it.
        app_id = existing[0] if existing else first_branch_id(partition_key)
    graph = build_graph(llm, policy=policy, system_prompt=system_prompt, cancel=cancel, notify=notify)
    builder = (
        ApplicationBuilder()
        .with_graph(graph)
        .initialize_from(
            persister,
            resume_at_next_action=resume,
            default_state=dict(DEFAULT_STATE, chat_history=[]),
            default_entrypoint=ENTRYPOINT,
            fork_from_app_id=fork_from_app_id,
            fork_from_partition_key=partition_key if fork_from_app_id else None,
            fork_from_sequence_id=fork_from_sequence_id,
        )
        .with_state_persister(persister)
        .with_identifiers(app_id=app_id, partition_key=partition_key)
        .with_hooks(*tracing.burr_hooks())  # one span per step while OpenTelemetry is on (core/tracing.py)
    )
    if tracker_project:
        params = {"storage_dir": tracker_dir} if tracker_dir else {}
        builder = builder.with_tracker(ResumingTrackingClient(project=tracker_project, redact=redact, **params))
    return builder.build()


TURN = TurnShape.of(build_graph(), ENTRYPOINT)
