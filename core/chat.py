"""`ChatService`: the one code path for a chat turn, used by the UI, the tests and any future server.

A turn runs human_input → safety_check (both persisted before the model is called) and then
streams ai_response (or the canned unsafe_response). Turns on one conversation are serialized
inside a process. Across processes, a turn waits while another server is midway through one on
the same branch, and the persister's conflict check catches the rest: the losing turn is replayed
on top of the latest state, so no message is lost.

A turn is where a model or database error becomes the message a user sees (`Turn.error`), so it is
also where that error is logged, once, with its traceback; the layers below only raise.
"""
from __future__ import annotations

import contextvars
import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from burr.core import Application
from burr.core.application import PRIOR_STEP

from core.actions import REFUSED, STOPPED
from core.app import build_application
from core.storage import BranchSummary, ConversationStore, ConversationSummary, SnapshotSummary
from core.text import is_valid_conversation_id
from core.llm import ChatModel, LLMError, build_model
from core.errors import InputError, SnapshotConflictError, StorageError
from core.storage import SQLAlchemyPersister
from core.text import plain_text
from core.safety import BlockedWordsPolicy, ModerationPolicy, SafetyPolicy
from core.settings import Settings

log = logging.getLogger(__name__)

REPLY_ACTIONS = ["ai_response", "unsafe_response"]
_MID_TURN = {"human_input": "safety_check", "safety_check": "reply"}  # completed step -> what comes next
_POLL_SECONDS = 0.1  # how often a second server looks whether the first one's turn has finished


class ConversationBusyError(StorageError):
    """Another turn on this conversation is still running."""


def clean_message(text: str | None, max_chars: int) -> str:
    """Validates a user message: not blank, within the limit, no control characters or broken Unicode."""
    text = plain_text(text or "").strip()
    if not text:
        raise InputError("Type a message first: empty messages are not sent.")
    if len(text) > max_chars:
        raise InputError(f"Your message has {len(text):,} characters; the limit is {max_chars:,}. Shorten it and send again.")
    return text


def valid_id(partition_key: str) -> str:
    """The same ids work on every database: a NUL, a lone surrogate or 300 characters would not."""
    if not is_valid_conversation_id(partition_key):
        raise InputError(f"{partition_key!r:.60} is not a valid conversation id: use letters, digits and "
                         "- _ . : only, at most 128 characters.")
    return partition_key


@dataclasses.dataclass(frozen=True)
class ConversationView:
    """What a page shows of one branch: its messages and whether its last step failed."""

    partition_key: str
    app_id: str | None
    messages: list[dict[str, Any]]
    sequence_id: int | None
    failed_step: str | None  # the action to retry, when the last step failed
    pending_step: str | None = None  # a turn stopped midway (failed, or a fork from inside a turn)


class Turn:
    """One chat turn. Iterate it for reply pieces; afterwards read `outcome`, `error`, `notice`."""

    def __init__(self, service: "ChatService", partition_key: str, app_id: str | None, prompt: str | None,
                 expected_messages: int | None = None):
        self.service, self.partition_key, self.app_id = service, partition_key, app_id
        self.prompt, self.expected_messages = prompt, expected_messages
        self.cancel = threading.Event()
        self.outcome: str | None = None  # "answered" | "refused" | "stopped" | "failed"
        self.error: Exception | None = None
        self.notice: str | None = None
        self.reply = ""

    def stop(self) -> None:
        """Ends the model call; what arrived so far is kept, marked as stopped."""
        self.cancel.set()

    def __iter__(self) -> Iterator[str]:
        lock = self.service.conversation_lock(self.partition_key)
        if not lock.acquire(timeout=self.service.settings.request_timeout * 2):
            self.outcome, self.error = "failed", ConversationBusyError(
                "This conversation is still answering in another tab. Wait for that reply, then send again.")
            log.warning("Turn on conversation %s not started: another turn held it for %.0f s",
                        self.partition_key, self.service.settings.request_timeout * 2)
            return
        try:
            yield from self._run()
        finally:
            lock.release()

    def _run(self) -> Iterator[str]:
        try:
            started = self._start()
        except (LLMError, StorageError) as exc:
            self._fail(exc)
            return
        if started is None:  # a retry, but the step already finished (a double click, another tab)
            self.outcome, self.notice = "answered", "Nothing to retry: this conversation already has its reply."
            return
        action, container = started
        finished = False
        stream = iter(container)  # held here so an early exit does not close (and fail) Burr's stream
        try:
            for result in stream:
                self.reply += result["delta"]
                yield result["delta"]
            finished = True
        except (LLMError, StorageError) as exc:
            self._fail(exc)
            return
        finally:
            if not finished and self.outcome is None:
                self._finish_stopped(stream)
        result, _state = container.get()
        self.reply = result.get("response", self.reply) if result else self.reply
        if action.name == "unsafe_response":
            self.outcome = "refused"
            yield self.reply
        else:
            self.outcome = "stopped" if self.cancel.is_set() else "answered"

    def _fail(self, exc: Exception) -> None:
        self.outcome, self.error = "failed", exc
        # The one log line for this error: the model's trouble is a warning, the database's an error.
        level = logging.ERROR if isinstance(exc, StorageError) else logging.WARNING
        kind = f" ({exc.kind})" if isinstance(exc, LLMError) else ""
        log.log(level, "Turn on conversation %s, branch %s failed%s: %s", self.partition_key, self.app_id, kind, exc,
                exc_info=exc)
        if isinstance(exc, StorageError):  # the turn may have stopped midway: that half is ours
            self.service.note_unfinished(self.partition_key)

    def _finish_stopped(self, stream: Iterator[dict]) -> None:
        """The consumer went away (Stop, page rerun): end the model call and keep what arrived."""
        self.cancel.set()
        self.outcome = "stopped"

        def drain() -> None:
            try:
                for result in stream:
                    self.reply += result["delta"]
            except (LLMError, StorageError) as exc:
                self._fail(exc)

        # Burr records a step as failed when sys.exc_info() is set as its stream ends; here the
        # GeneratorExit being handled would leak into it, so the stream is finished on a clean thread.
        # (Burr keeps per-run bookkeeping in context variables, so the thread gets a copy of ours.)
        worker = threading.Thread(target=contextvars.copy_context().run, args=(drain,), name="burrow-stop")
        worker.start()
        worker.join()

    def _start(self) -> tuple | None:
        """Steps to the reply action, replaying once on top of the latest state after a conflict."""
        for attempt in range(2):
            app = self.service.application(self.partition_key, self.app_id, cancel=self.cancel)
            if self.prompt is not None and _mid_turn(app) and self._waited_for_other_writer(app.uid):
                app = self.service.application(self.partition_key, app.uid, cancel=self.cancel)
            self.app_id = app.uid
            try:
                return self._step_to_reply(app)
            except SnapshotConflictError:
                self.service.persister.forget(self.partition_key, self.app_id)
                if attempt == 1 or self.prompt is None:
                    raise  # logged by _fail, as the error the user sees
                log.info("Conversation %s, branch %s changed under this turn: replaying it on the latest state",
                         self.partition_key, self.app_id)
                self.notice = "This conversation changed in another tab or window; your message was added after the latest messages."
        raise AssertionError("unreachable")

    def _waited_for_other_writer(self, app_id: str) -> bool:
        """Waits while another server is midway through a turn on this branch, so turns never interleave.

        Its last saved step is then the user's message or the safety check, saved moments ago. A turn
        this process left unfinished (a database error) or an older one (a crashed server) is not
        waited for: the new message goes after it, as after a failed reply. True if we waited.
        """
        service, budget = self.service, self.service.settings.request_timeout * 2
        deadline, waited = time.monotonic() + budget, False
        while True:
            latest = service.persister.load(self.partition_key, app_id)
            busy = latest is not None and service.other_writer_is_busy(self.partition_key, latest, budget)
            if not busy or time.monotonic() >= deadline or self.cancel.is_set():
                break
            waited = True
            time.sleep(_POLL_SECONDS)
        if waited and latest is not None and latest["position"] not in _MID_TURN:  # it finished, not went stale
            self.notice = "This conversation was answering in another tab or window; your message was added after that reply."
        return waited

    def _step_to_reply(self, app: Application) -> tuple | None:
        if self.prompt is None:  # a retry of the failed step; None when nothing is left to run
            next_action = app.get_next_action()
            if next_action is None or next_action.name == "human_input":
                return None
            return app.stream_result(halt_after=REPLY_ACTIONS)
        history = app.state.get("chat_history", [])
        if self.expected_messages is not None and len(history) != self.expected_messages and self.notice is None:
            self.notice = "This conversation had new messages from another tab or window; your message was added after them."
        if app.get_next_action() is None or app.get_next_action().name != "human_input":
            # The last reply failed and the user moved on: skip it rather than block the conversation.
            app.update_state(app.state.update(**{PRIOR_STEP: "ai_response"}))
        return app.stream_result(halt_after=REPLY_ACTIONS, inputs={"prompt": self.prompt})


class ChatService:
    """Owns the persister, the model and the policy; created once per process."""

    def __init__(self, settings: Settings, persister: SQLAlchemyPersister, model: ChatModel,
                 policy: SafetyPolicy | None = None):
        self.settings, self.persister, self.model = settings, persister, model
        self.policy = policy or BlockedWordsPolicy(settings.blocked_words)
        self.conversations = ConversationStore(persister)
        self._locks: dict[str, threading.Lock] = {}
        self._unfinished: dict[str, datetime] = {}  # partition -> when a turn of ours stopped midway
        self._locks_guard = threading.Lock()

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

    @staticmethod
    def new_conversation_id() -> str:
        return uuid.uuid4().hex

    def note_unfinished(self, partition_key: str) -> None:
        """A turn of ours stopped midway on a storage error; its half is not another server's work."""
        self._unfinished[partition_key] = datetime.now(timezone.utc)

    def other_writer_is_busy(self, partition_key: str, latest: dict, budget: float) -> bool:
        """Whether the branch's last step is a turn under way elsewhere (saved < budget seconds ago)."""
        if latest["status"] == "failed" or latest["position"] not in _MID_TURN:
            return False
        saved = datetime.fromisoformat(latest["created_at"])
        saved = saved if saved.tzinfo else saved.replace(tzinfo=timezone.utc)
        ours = self._unfinished.get(partition_key)
        if (ours is not None and saved <= ours) or datetime.now(timezone.utc) - saved > timedelta(seconds=budget):
            return False
        branch = next((b for b in self.conversations.branches(partition_key) if b.app_id == latest["app_id"]), None)
        # A fork taken from inside a turn starts midway, but nobody is writing it.
        return branch is None or branch.forked_from_app_id is None or branch.last_sequence_id != branch.forked_from_sequence_id

    def conversation_lock(self, partition_key: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(partition_key, threading.Lock())

    def application(self, partition_key: str, app_id: str | None = None, *, cancel: threading.Event | None = None,
                    **fork: Any) -> Application:
        """A Burr application for one branch, built fresh so it always starts from the stored state."""
        try:
            return build_application(
                partition_key, persister=self.persister, llm=self.model, app_id=app_id,
                tracker_project=self.settings.tracker_project, tracker_dir=self.settings.tracker_dir,
                policy=self.policy, system_prompt=self.settings.system_prompt, cancel=cancel, **fork)
        except OSError as exc:  # the tracker could not write its files
            raise StorageError(f"Could not write Burr tracking files: {exc}. Set BURROW_TRACKER_DIR or BURROW_TRACKER_PROJECT=off.") from exc

    def open(self, partition_key: str, app_id: str | None = None) -> ConversationView:
        """The latest state of a branch (default: the most recent one); empty for a new conversation."""
        data = self.persister.load(valid_id(partition_key), app_id)
        if data is None:
            return ConversationView(partition_key, app_id, [], None, None)
        failed = data["position"] if data["status"] == "failed" else None
        pending = failed or _MID_TURN.get(data["position"])
        return ConversationView(partition_key, data["app_id"], list(data["state"].get("chat_history", [])),
                                data["sequence_id"], failed, pending)

    def send(self, partition_key: str, text: str, app_id: str | None = None,
             expected_messages: int | None = None) -> Turn:
        """Starts a turn with the user's message; raises InputError for a message that cannot be sent."""
        return Turn(self, valid_id(partition_key), app_id, clean_message(text, self.settings.max_message_chars),
                    expected_messages)

    def retry(self, partition_key: str, app_id: str | None = None) -> Turn:
        """Re-runs the step that failed (or finishes a turn a fork started midway)."""
        return Turn(self, valid_id(partition_key), app_id, None)

    def fork(self, partition_key: str, app_id: str, sequence_id: int) -> str:
        """Starts a new branch from a snapshot (Burr's fork_from_*) and saves it, so it opens at once."""
        source = self.persister.load(valid_id(partition_key), app_id, sequence_id)
        if source is None:
            raise StorageError(f"Step {sequence_id} of branch {app_id} does not exist.")
        app = self.application(partition_key, None, fork_from_app_id=app_id, fork_from_sequence_id=sequence_id)
        self.persister.save(partition_key, app.uid, source["sequence_id"], source["position"], source["state"],
                            source["status"], forked_from=(app_id, sequence_id))
        return app.uid


def _mid_turn(app: Application) -> bool:
    """The branch's last saved step is inside a turn (its next action is not the user's message)."""
    next_action = app.get_next_action()
    return next_action is not None and next_action.name != "human_input"


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


__all__ = ["BranchSummary", "ChatService", "ConversationSummary", "ConversationView", "InputError", "SnapshotSummary",
           "Turn", "clean_message", "STOPPED", "REFUSED"]
