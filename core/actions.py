"""The four Burr actions of a chat turn: human_input → safety_check → ai_response | unsafe_response.

Collaborators (the model, the safety policy, the cancel event) are bound with `.bind()` when the
application is built, so they never appear in Burr state or in the tracker's logged inputs.
`chat_history` is the OpenAI message list; an assistant message may carry `status`: "stopped"
(the user pressed Stop; content is what had arrived) or "refused" (the safety policy said no).
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from typing import Any

from burr.core import State, action
from burr.core.action import streaming_action

from core.errors import LLMError
from core.facts import FINISH_ERROR, FINISH_STOP, FINISH_STOPPED, ReplyClock, StreamReport
from core.llm import ChatModel, Message
from core.safety import REFUSAL, SafetyPolicy

STOPPED = "stopped"
REFUSED = "refused"


def with_message(state: State, message: dict[str, Any]) -> list[dict[str, Any]]:
    """The history plus one message, as a new list that shares the old messages.

    Sharing them keeps each step O(1) in messages and lets the persister see "only appended" by
    comparing pointers. Messages are never modified once in the history.
    """
    return [*state.get("chat_history", []), message]


def updated(state: State, **values: Any) -> State:
    """`state.update(...)` without Burr first deep-copying the values it replaces.

    Burr's update/append deep-copy the old value of each key they set: for `chat_history`, every
    earlier message on every step (~4 ms at 2,000 messages). Nothing here modifies a value in
    place, so that copy buys nothing.
    """
    return state.merge(State(values))


@action(reads=["chat_history"], writes=["chat_history", "prompt"])
def human_input(state: State, prompt: str) -> tuple[dict, State]:
    """Records the user's message; it is persisted before anything calls the model."""
    message = {"role": "user", "content": prompt}
    return {"prompt": prompt}, updated(state, prompt=prompt, chat_history=with_message(state, message))


@action(reads=["prompt"], writes=["safe"])
def safety_check(state: State, policy: SafetyPolicy) -> tuple[dict, State]:
    safe = bool(policy.is_safe(state["prompt"]))
    return {"safe": safe}, state.update(safe=safe)


@action(reads=[], writes=["response", "chat_history"])
def unsafe_response(state: State) -> tuple[dict, State]:
    """A canned refusal; the model is never called for a flagged prompt."""
    message = {"role": "assistant", "content": REFUSAL, "status": REFUSED}
    return {"response": REFUSAL}, updated(state, response=REFUSAL, chat_history=with_message(state, message))


def model_messages(system_prompt: str, chat_history: list[dict[str, Any]]) -> list[Message]:
    """The OpenAI message list: system prompt first, then role/content only (our extra keys stay home).

    A refused exchange is left out whole: the policy ruled that prompt must not reach the model,
    so it is not sent later as history either.
    """
    history: list[Message] = []
    for message in chat_history:
        if message.get("status") == REFUSED:
            if history and history[-1]["role"] == "user":
                history.pop()
            continue
        history.append({"role": message["role"], "content": message["content"]})
    return [{"role": "system", "content": system_prompt}, *history]


@streaming_action(reads=["chat_history"], writes=["response", "chat_history"])
def ai_response(
    state: State, model: ChatModel, system_prompt: str, cancel: threading.Event,
    notify: Callable[[str], None] | None = None,
) -> Generator[tuple[dict, State | None], None, None]:
    """Streams the model's reply piece by piece, then appends it to the history with its facts
    (core/facts.py: model, timings, tokens, finish reason).

    A model failure raises (Burr records the step as failed and keeps the state before it, so a
    partial reply is never saved as complete); the error carries the failed reply's facts. A Stop
    keeps what arrived, marked as stopped. `notify` hears what the wait is about (the client retrying).
    """
    pieces: list[str] = []
    clock, report = ReplyClock(), StreamReport(on_retry=notify)
    try:
        for piece in model.stream(model_messages(system_prompt, state["chat_history"]), cancel=cancel, report=report):
            clock.piece()
            pieces.append(piece)
            yield {"delta": piece}, None
    except LLMError as exc:
        exc.facts = clock.facts(report, FINISH_ERROR)
        raise
    text = "".join(pieces)
    finish = FINISH_STOPPED if cancel.is_set() else report.finish_reason or FINISH_STOP
    message: dict[str, Any] = {"role": "assistant", "content": text, **clock.facts(report, finish)}
    if cancel.is_set():
        message["status"] = STOPPED
    history = with_message(state, message)
    yield {"response": text, "stopped": cancel.is_set()}, updated(state, response=text, chat_history=history)
