"""`ChatService`: the one facade every client uses (the Streamlit pages, the HTTP API, scripts, tests).

It offers what a client needs and hides storage: open a branch, send, retry, stop, attach to a
run, list and manage conversations and branches, a snapshot with what changed and what runs next,
fork, close. Clients never touch the persister, the engine or the writer coordination.

Sending starts a run (core/runs.py) on a worker thread of this service: the client gets the run
back at once and watches its events; the turn (core/turn.py) goes on whatever the client does.
Turns on one branch never interleave, in one process or across servers (core/writers.py).
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import uuid
from pathlib import Path
from typing import Any

from burr.core import Application

from core.access import AccessMixin, no_conversation, not_saved, scoped
from core.actions import REFUSED, STOPPED
from core.branching import BranchingMixin
from core.app import TURN, build_application
from core.errors import BusyError, InputError, LLMError, StorageError
from core.history import StateDiff, diff_states, next_action
from core.limits import UserLimits
from core.llm import ChatModel, build_model
from core.logs import Redactor, secrets_of
from core.relay import RelayedRun, Relay
from core.runs import EventKind, Run, RunManager
from core.searching import SearchMixin
from core.safety import BlockedWordsPolicy, ModerationPolicy, SafetyPolicy
from core.settings import Settings
from core.storage import (AccountStore, BranchSummary, ConversationStore, ConversationSummary, Feedback, FeedbackStore, LeaseStore,
                          Lineage, SnapshotSummary, SQLAlchemyPersister)
from core.text import clean_message, valid_id
from core.tracker_files import delete_tracker_runs
from core.transfer import TransferMixin
from core.tree import ConversationTree, OutlineEntry, Versions
from core.turn import Turn, TurnOutcome
from core.writers import WriterCoordination

log = logging.getLogger(__name__)
READ_TRIES = 5  # reads of a branch while runs on it keep ending (`_read_with_runs`)


@dataclasses.dataclass(frozen=True)
class ConversationView:
    """What a page shows of one branch: its messages, and where its last turn stands."""

    partition_key: str
    app_id: str | None
    messages: list[dict[str, Any]]
    sequence_id: int | None
    failed_step: str | None = None  # the action to retry, when the last step failed
    pending_step: str | None = None  # the turn stopped midway (failed, abandoned, or a fork from inside a turn)
    failure: str | None = None  # why the last step failed, as saved with it
    unanswered: tuple[int, ...] = ()  # indices of user messages that never got a reply
    run: Run | None = None  # a reply being written by this process right now (the newest of `live_runs`)
    replying_elsewhere: bool = False  # a reply being written by another process right now
    failure_facts: dict[str, Any] = dataclasses.field(default_factory=dict)  # of the reply that failed
    versions: dict[int, Versions] = dataclasses.field(default_factory=dict)  # messages with other versions
    feedback: dict[int, Feedback] = dataclasses.field(default_factory=dict)  # ratings, by message index
    live_runs: tuple[Run, ...] = ()  # this process's runs on the branch when it was read, oldest first


@dataclasses.dataclass(frozen=True)
class SnapshotView:
    """One saved step for the History page: its state, the one before it, the difference, what runs next."""

    summary: SnapshotSummary
    state: dict[str, Any]
    previous: dict[str, Any] | None
    diff: StateDiff
    next_action: str | None


class ChatService(AccessMixin, BranchingMixin, TransferMixin, SearchMixin):
    """Owns the persister, the model, the policy and the runs; created once per process, then used
    as one user (`as_user`, core/access.py). Trees: core/branching.py; export and import:
    core/transfer/; search: core/searching.py."""

    def __init__(self, settings: Settings, persister: SQLAlchemyPersister, model: ChatModel,
                 policy: SafetyPolicy | None = None):
        self.settings, self._persister, self.model = settings, persister, model
        self.policy = policy or BlockedWordsPolicy(settings.blocked_words)
        self._catalog = ConversationStore(persister)
        self._lineage = Lineage(persister.database)
        self._feedback = FeedbackStore(persister.database)
        self._accounts = AccountStore(persister.database)
        self.writers = WriterCoordination(LeaseStore(persister.database))
        self.runs = RunManager(settings.max_runs, keep_seconds=settings.run_keep_seconds)
        # per-user limits once there are users; one local user has the process's own (max_runs)
        self._limits = (UserLimits(settings.user_max_runs, settings.user_messages_per_minute)
                        if settings.auth != "none" else None)
        # BURROW_RELAY on PostgreSQL: runs followed across server processes; else within this one
        self.relay = Relay.start_for(settings.database_url, self.runs.get, settings.run_keep_seconds) if settings.relay else None
        self._closed = threading.Event()
        self._redact = Redactor(secrets_of(settings))  # for error texts Burr's tracker records

    @classmethod
    def from_settings(cls, settings: Settings, model: ChatModel | None = None) -> "ChatService":
        """Connects to the database (creating a SQLite file's folder) and upgrades its schema."""
        _ensure_sqlite_folder(settings.database_url)
        persister = SQLAlchemyPersister.from_url(settings.database_url, list_cache_bytes=settings.list_cache_mb * 2**20)
        persister.initialize()
        model = model or build_model(settings)
        policy: SafetyPolicy = BlockedWordsPolicy(settings.blocked_words)
        if settings.use_moderation and not model.offline:
            policy = ModerationPolicy(model, first=policy)
        return cls(settings, persister, model, policy)

    @property
    def persister(self) -> SQLAlchemyPersister:
        """For tests, benchmarks and maintenance scripts; pages and the API use the methods below
        (tests/test_layers.py checks that ui/ and server/ never reach it)."""
        return self._persister

    @staticmethod
    def new_conversation_id() -> str:
        return uuid.uuid4().hex

    # ---- turns ---------------------------------------------------------------------------------
    @scoped(no_conversation)
    def send(self, partition_key: str, text: str, app_id: str | None = None,
             expected_messages: int | None = None) -> Run:
        """Starts a turn with the user's message and returns its run at once.

        InputError for a message that cannot be sent; BusyError when this process is at its run limit
        (LimitError when the user is at theirs).
        """
        prompt = clean_message(text, self.settings.max_message_chars)
        return self._start(partition_key, app_id, prompt, expected_messages)

    @scoped(no_conversation)
    def retry(self, partition_key: str, app_id: str | None = None) -> Run:
        """Re-runs the step that failed (or finishes a turn a fork started midway)."""
        return self._start(partition_key, app_id, None, None)

    def _start(self, partition_key: str, app_id: str | None, prompt: str | None, expected: int | None,
               fork_from: tuple[str, int] | None = None) -> Run:
        if self._limits is not None:
            self._limits.admit(self.user.subject, sum(1 for r in self.runs.active() if r.owner == self.user.subject))
        self._claim(partition_key)
        run = Run(partition_key, app_id, self.user.subject)
        if self.relay is not None:
            run.listeners.append(self.relay.publish)
        run.publish(EventKind.STARTED, partition_key=partition_key, app_id=app_id)
        return self.runs.start(run, lambda r: Turn(self, r, prompt, expected, fork_from)())

    def run(self, run_id: str) -> Run | None:
        """A run of this process by id (running, or finished recently), to attach to; None for
        another user's (as for an unknown id)."""
        run = self.runs.get(run_id)
        return run if run is not None and self._follows(run.owner) else None

    def _follows(self, owner: str) -> bool:
        return owner == self.user.subject or self.user.everything

    def attach(self, run_id: str) -> Run | RelayedRun | None:
        """A run to follow, of this process or, on PostgreSQL, of another one (replayed from its first
        event, then live); None when no process has it (this asks the others, which takes a moment)."""
        found = self.runs.get(run_id)
        if found is None and self.relay is not None:
            followed = self.relay.follow(run_id)
            return followed if followed is None or self._may_follow(followed) else None
        return found if found is None or self._follows(found.owner) else None

    def _may_follow(self, followed: RelayedRun) -> bool:
        """Another process's run: followed if its conversation is the user's (or new, not saved yet)."""
        return bool(followed.partition_key) and self.may(followed.partition_key)

    @scoped([], write=False)
    def active_runs(self, partition_key: str, app_id: str | None = None) -> list[Run]:
        """The runs of this process on this conversation (on this branch, when given), oldest first:
        the one writing a reply, then any queued behind it."""
        return [r for r in self.runs.active(partition_key) if app_id is None or r.app_id in (None, app_id)]

    @scoped(None, write=False)
    def active_run(self, partition_key: str, app_id: str | None = None) -> Run | None:
        """The newest run of this process on this conversation (on this branch, when given)."""
        runs = self.active_runs(partition_key, app_id)
        return runs[-1] if runs else None

    def stop(self, run_id: str) -> bool:
        """Stops a run (what arrived is kept, marked stopped); False for an unknown or finished run."""
        run = self.runs.get(run_id)
        if run is None:  # another process's run, followed through the relay: ask its writer to stop
            followed = self.relay.followed(run_id) if self.relay is not None else None
            if followed is None or followed.done or not followed.partition_key:
                return False
            return self.stop_elsewhere(followed.partition_key, followed.app_id)
        if not self._follows(run.owner):
            return False
        if run.done:
            return False
        run.stop()
        return True

    @scoped(False)
    def stop_elsewhere(self, partition_key: str, app_id: str | None = None) -> bool:
        """Stops a reply another server is writing on this conversation (it notices within seconds)."""
        return self.writers.request_stop(partition_key, app_id)

    def replying(self, partition_keys: list[str]) -> set[str]:
        """Which of these conversations are writing a reply right now, here or on another server."""
        partition_keys = self.visible(partition_keys)
        local = {run.partition_key for run in self.runs.active()}
        return (local & set(partition_keys)) | self.writers.busy_conversations(partition_keys)

    # ---- what the turn needs (core/turn.py, on a run this user may write) ------------------------
    def application(self, partition_key: str, app_id: str | None = None, *, cancel: threading.Event | None = None,
                    resume: bool = True, notify: Any = None, **fork: Any) -> Application:
        """A Burr application for one branch, built fresh so it always starts from the stored state."""
        try:
            return build_application(
                partition_key, persister=self._persister, llm=self.model, app_id=app_id,
                tracker_project=self.settings.tracker_project, tracker_dir=self.settings.tracker_dir,
                policy=self.policy, system_prompt=self.settings.system_prompt, cancel=cancel, resume=resume,
                redact=self._redact, notify=notify, **fork)
        except OSError as exc:  # the tracker could not write its files
            raise StorageError(f"Could not write Burr tracking files: {exc}. Set BURROW_TRACKER_DIR or "
                               "BURROW_TRACKER_PROJECT=off.") from exc

    def latest_branch(self, partition_key: str) -> str | None:
        branches = self._persister.list_app_ids(partition_key)
        return branches[0] if branches else None

    def forget_cache(self, partition_key: str, app_id: str | None = None) -> None:
        self._persister.forget(partition_key, app_id)

    def note_failure(self, partition_key: str, app_id: str, message: str, facts: dict | None = None) -> None:
        self._catalog.note_failure(partition_key, app_id, message, facts)

    # ---- reading a conversation ----------------------------------------------------------------
    @scoped(lambda self, partition_key, app_id=None: ConversationView(partition_key, app_id, [], None), write=False)
    def open(self, partition_key: str, app_id: str | None = None) -> ConversationView:
        """The latest state of a branch (default: the most recent one); empty for a new conversation."""
        data, runs = self._read_with_runs(partition_key, app_id)
        branch = data["app_id"] if data else app_id
        runs = tuple(r for r in runs if branch is None or r.app_id in (None, branch))
        run = runs[-1] if runs else None
        if data is None:
            return ConversationView(partition_key, app_id, [], None, run=run, live_runs=runs)
        branch, position, status = data["app_id"], data["position"], data["status"]
        messages = list(data["state"].get("chat_history", []))
        failed = position if status == "failed" else None
        midway = TURN.midway(position, status)
        elsewhere = run is None and midway and not failed and self.writers.busy(partition_key, branch)
        failure, failure_facts = self._catalog.step_error(partition_key, branch, data["sequence_id"]) if failed else (None, {})
        pending = (failed or TURN.after.get(position, TURN.entrypoint)) if midway else None
        live = run is not None or elsewhere
        tree = self.tree(partition_key)
        return ConversationView(partition_key, branch, messages, data["sequence_id"], failed, pending, failure,
                                _unanswered(messages, waiting=live), run, elsewhere, failure_facts,
                                tree.all_versions(branch), self._feedback_on(partition_key, branch, tree), runs)

    def _read_with_runs(self, partition_key: str, app_id: str | None) -> tuple[dict | None, list[Run]]:
        """The branch's saved state and this process's runs on the conversation, consistent with each
        other: a run saves its reply before it leaves the active list, so when one leaves during the
        read (its reply may have missed the read), the read is done again."""
        runs = self.active_runs(partition_key)
        for _ in range(READ_TRIES):
            data = self._persister.load(partition_key, app_id)
            after = self.active_runs(partition_key)
            if all(run in after for run in runs):
                return data, after
            runs = after
        return data, after

    # ---- the catalog ---------------------------------------------------------------------------
    def conversations(self, search: str = "", limit: int = 50, before_activity: int | None = None,
                      everyone: bool = False) -> list[ConversationSummary]:
        """The user's conversations (an admin's `everyone`: all users'), pinned first, then newest
        activity; `before_activity` (the last item's `cursor`) is the next page's cursor."""
        return self._catalog.list(search, limit, before_activity, owner=self.listing_owner(everyone))

    def count_conversations(self, search: str = "", everyone: bool = False) -> int:
        return self._catalog.count(search, owner=self.listing_owner(everyone))

    @scoped(None, write=False)
    def conversation(self, partition_key: str) -> ConversationSummary | None:
        return self._catalog.get(partition_key)

    @scoped(not_saved("rename"))
    def rename(self, partition_key: str, title: str) -> None:
        self._catalog.rename(partition_key, title)

    @scoped(False)
    def delete(self, partition_key: str) -> bool:
        """Deletes a conversation with all its branches and their Burr tracker files; a reply being
        written to it is stopped first."""
        for run in self.runs.active(partition_key):
            run.stop()
            run.wait(self.settings.request_timeout)
        delete_tracker_runs(self.settings.tracker_dir, self.settings.tracker_project, partition_key,
                            self.branch_ids(partition_key))
        return self._catalog.delete(partition_key)

    @scoped([], write=False)
    def branches(self, partition_key: str) -> list[BranchSummary]:
        return self._catalog.branches(partition_key)

    @scoped([], write=False)
    def branch_ids(self, partition_key: str) -> list[str]:
        return self._persister.list_app_ids(partition_key)

    @scoped([], write=False)
    def snapshots(self, partition_key: str, app_id: str, offset: int = 0, limit: int = 100,
                  newest_first: bool = False) -> list[SnapshotSummary]:
        return self._catalog.snapshots(partition_key, app_id, offset, limit, newest_first)

    @scoped(0, write=False)
    def snapshot_count(self, partition_key: str, app_id: str) -> int:
        return self._catalog.snapshot_count(partition_key, app_id)

    @scoped(None, write=False)
    def snapshot(self, partition_key: str, app_id: str, sequence_id: int) -> SnapshotView | None:
        """One step with its state as stored, the previous step's, what changed and what runs next."""
        summary = self._catalog.snapshot(partition_key, app_id, sequence_id)
        state = self._persister.load_serialized(partition_key, app_id, sequence_id) if summary else None
        if summary is None or state is None:
            return None
        previous_seq = self._catalog.previous_sequence_id(partition_key, app_id, sequence_id)
        previous = (self._persister.load_serialized(partition_key, app_id, previous_seq)
                    if previous_seq is not None else None)
        return SnapshotView(summary, state, previous, diff_states(previous, state),
                            next_action(summary.position, summary.status, state))

    @scoped(lambda self, partition_key, app_id, sequence_id, *args, **kwargs: _no_step(app_id, sequence_id))
    def fork(self, partition_key: str, app_id: str, sequence_id: int, new_app_id: str | None = None) -> str:
        """Starts a new branch from a snapshot (Burr's fork_from_*) and saves it, so it opens at once."""
        source = self._persister.load(partition_key, app_id, sequence_id)
        if source is None:
            _no_step(app_id, sequence_id)
        app = self.application(partition_key, new_app_id, fork_from_app_id=app_id, fork_from_sequence_id=sequence_id)
        self._persister.save(partition_key, app.uid, source["sequence_id"], source["position"], source["state"],
                             source["status"], forked_from=(app_id, sequence_id))
        return app.uid

    def ping(self) -> None:
        """Raises StorageError when the database cannot be reached (for readiness checks)."""
        self._catalog.count()

    def close(self, timeout: float = 10.0) -> None:
        """Stops taking runs, stops the running ones (partial replies saved as stopped), then disconnects."""
        if self._closed.is_set():
            return
        self._closed.set()
        self.runs.shutdown(timeout)
        if self.relay is not None:
            self.relay.close()
        self._persister.engine.dispose()

    @scoped(False)
    def pin(self, partition_key: str, pinned: bool) -> bool:
        """Pins a conversation (listed first, kept by retention) or unpins it; False if there is none."""
        return self._catalog.pin(partition_key, pinned)


def _no_step(app_id: str, sequence_id: int) -> None:
    raise StorageError(f"Step {sequence_id} of branch {app_id} does not exist.")


def _unanswered(messages: list[dict[str, Any]], waiting: bool) -> tuple[int, ...]:
    """User messages with no reply after them; the last one counts unless a reply is being written."""
    found = []
    for index, message in enumerate(messages):
        if message.get("role") != "user":
            continue
        following = messages[index + 1] if index + 1 < len(messages) else None
        if (following is None and not waiting) or (following is not None and following.get("role") == "user"):
            found.append(index)
    return tuple(found)


def _ensure_sqlite_folder(url: str) -> None:
    """Creates the folder of a SQLite file so the zero-setup default works on a fresh machine."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.query.get("uri") in ("true", "1") and database.startswith("file:"):
        # sqlite:///file:/x/y.db?mode=ro&uri=true names the file /x/y.db (file:///x/y.db too)
        database = database.removeprefix("file:").removeprefix("//")
    if parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:") and parsed.query.get("mode") != "memory":
        try:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"Cannot create the folder for the database file {database}: {exc}") from exc


__all__ = ["BranchSummary", "BusyError", "ChatService", "ConversationSummary", "ConversationTree", "ConversationView",
           "EventKind", "Feedback", "InputError", "OutlineEntry", "LLMError", "REFUSED", "Run", "STOPPED", "SnapshotSummary",
           "SnapshotView", "StorageError", "TurnOutcome", "Versions", "clean_message"]
