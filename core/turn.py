"""One chat turn, executed on a run's worker thread (core/runs.py) and reported into that run.

A turn holds its branch's lease (core/writers.py) from before it loads the branch until its reply
is saved. It then runs human_input and safety_check (both persisted before the model is called)
and streams ai_response, or the canned unsafe_response, publishing each piece as it arrives.
A turn is where a model or database error becomes the message a user sees, so it is also where
that error is logged, once, with its traceback, and saved with the failed step.
"""
from __future__ import annotations

import enum
import logging
from typing import TYPE_CHECKING, Any

from burr.core import Application

from core.actions import REFUSED
from core.app import TURN, first_branch_id
from core.errors import BusyError, LLMError, SnapshotConflictError, StorageError
from core.runs import EventKind, Run

if TYPE_CHECKING:
    from core.chat import ChatService

log = logging.getLogger(__name__)


class TurnOutcome(str, enum.Enum):
    ANSWERED = "answered"
    REFUSED = "refused"  # the safety policy said no; the model was not called
    STOPPED = "stopped"  # Stop, the request timeout or shutdown: what arrived is kept, marked stopped
    FAILED = "failed"  # the error event says why
    NOTHING_TO_RETRY = "nothing_to_retry"  # a retry of a branch that already has its reply


CHANGED_ELSEWHERE = ("This conversation had new messages from another tab or window; your message was added "
                     "after them.")


class Turn:
    """The work of one run: `Turn(service, run, prompt)()` on the run's worker thread."""

    def __init__(self, service: "ChatService", run: Run, prompt: str | None, expected_messages: int | None = None,
                 fork_from: tuple[str, int] | None = None):
        self.service, self.run, self.prompt, self.expected_messages = service, run, prompt, expected_messages
        self.fork_from = fork_from  # (branch, sequence id): the run's new branch starts as a copy of that step
        self.saved_message = prompt is None  # a retry's message is saved already; a new one once human_input is

    def __call__(self) -> str:
        """Runs the turn; returns its outcome (the run manager publishes it as the run's last event)."""
        try:
            outcome = self._run()
        except (LLMError, StorageError, BusyError) as exc:
            outcome = self._fail(exc)
        return outcome.value

    def _run(self) -> TurnOutcome:
        run, service = self.run, self.service
        run.app_id = run.app_id or service.latest_branch(run.partition_key) or first_branch_id(run.partition_key)
        if self.fork_from is not None:  # an edit or a regenerate: a new branch, so nobody else writes it yet
            service.fork(run.partition_key, *self.fork_from, new_app_id=run.app_id)
        # Long enough for a reply elsewhere to finish, and always for a dead writer's lease to expire.
        wait_limit = max(service.settings.request_timeout * 2, service.writers.ttl * 2)
        with service.writers.hold(run.partition_key, run.app_id, wait_limit, run.cancel, on_wait=self._waiting):
            started = self._start()
            if started is None:
                run.publish(EventKind.NOTICE, text="Nothing to retry: this conversation already has its reply.")
                return TurnOutcome.NOTHING_TO_RETRY
            app, container = started
            self.saved_message = True  # stream_result ran (and persisted) human_input and safety_check first
            try:
                for result in container:
                    run.publish(EventKind.DELTA, text=result["delta"])
            except LLMError as exc:
                self._record_failure(exc)
                raise
            _result, state = container.get()
            return self._completed(app, state)

    def _retrying(self, reason: str) -> None:
        self.run.publish(EventKind.WAITING, reason=reason)

    def _waiting(self) -> None:
        self.run.publish(EventKind.WAITING, reason="Another message in this conversation is being answered; "
                                                   "yours goes next.")

    def _start(self) -> tuple[Application, Any] | None:
        """Steps to the reply action, replaying once on the latest state after a conflict."""
        for attempt in range(2):
            # A new message starts at the entrypoint; a retry resumes at the step that failed.
            app = self.service.application(self.run.partition_key, self.run.app_id, cancel=self.run.cancel,
                                           resume=self.prompt is None, notify=self._retrying)
            try:
                return self._step_to_reply(app)
            except SnapshotConflictError:
                self.service.forget_cache(self.run.partition_key, self.run.app_id)
                if attempt == 1 or self.prompt is None:
                    raise
                log.info("Conversation %s, branch %s changed under this turn: replaying it on the latest state",
                         self.run.partition_key, self.run.app_id)
                self.run.publish(EventKind.NOTICE, text=CHANGED_ELSEWHERE)
        raise AssertionError("unreachable")

    def _step_to_reply(self, app: Application) -> tuple[Application, Any] | None:
        if self.prompt is None:  # a retry of the failed step; None when nothing is left to run
            next_action = app.get_next_action()
            if next_action is None or next_action.name == TURN.entrypoint:
                return None
            _action, container = app.stream_result(halt_after=list(TURN.reply_actions))
            return app, container
        history = app.state.get("chat_history", [])
        if self.expected_messages is not None and len(history) != self.expected_messages:
            self.run.publish(EventKind.NOTICE, text=CHANGED_ELSEWHERE)
        if app.get_next_action() is None or app.get_next_action().name != TURN.entrypoint:
            # The last turn failed or was abandoned (its message stays, unanswered): start a new one.
            app.reset_to_entrypoint()
        _action, container = app.stream_result(halt_after=list(TURN.reply_actions), inputs={"prompt": self.prompt})
        return app, container

    def _completed(self, app: Application, state: Any) -> TurnOutcome:
        message = dict(state["chat_history"][-1]) if state and state.get("chat_history") else {}
        if message.get("status") == REFUSED:
            self.run.publish(EventKind.DELTA, text=message.get("content", ""))  # a canned reply: no stream
        self.run.publish(EventKind.COMPLETED, message=message, sequence_id=app.sequence_id)
        if message.get("status") == REFUSED:
            return TurnOutcome.REFUSED
        return TurnOutcome.STOPPED if self.run.cancel.is_set() else TurnOutcome.ANSWERED

    def _record_failure(self, exc: LLMError) -> None:
        """Saves why the reply failed with the failed step, so a reload can still say it."""
        try:
            self.service.note_failure(self.run.partition_key, self.run.app_id, str(exc), exc.facts)
        except StorageError:
            log.warning("Could not save the failure reason of %s/%s", self.run.partition_key, self.run.app_id,
                        exc_info=True)

    def _fail(self, exc: Exception) -> TurnOutcome:
        # The one log line for this error: the model's trouble is a warning, the database's an error.
        level = logging.ERROR if isinstance(exc, StorageError) else logging.WARNING
        kind = f" ({exc.kind})" if isinstance(exc, LLMError) else ""
        log.log(level, "Turn on conversation %s, branch %s failed%s: %s", self.run.partition_key, self.run.app_id,
                kind, exc, exc_info=not isinstance(exc, BusyError))
        self.run.error = exc
        retryable = exc.retryable if isinstance(exc, LLMError) else True
        self.run.publish(EventKind.ERROR, message=str(exc), retryable=retryable, kind=_kind(exc),
                         saved=self.saved_message)
        return TurnOutcome.FAILED


def _kind(exc: Exception) -> str:
    """A machine-readable error kind for API clients."""
    if isinstance(exc, LLMError):
        return exc.kind
    if isinstance(exc, BusyError):
        return "busy"
    return "conflict" if isinstance(exc, SnapshotConflictError) else "storage"
