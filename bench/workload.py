"""The benchmark's conversation: real Burr `Application`, an instant fake model, deterministic text.

Every persister sees byte-for-byte the same messages: user and assistant texts (~600 UTF-8 bytes
each) are built from a fixed word list with a seeded generator, so runs are comparable.
"""
from __future__ import annotations

import random
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from burr.core import Application
from burr.core.persistence import BaseStatePersister

from core.app import TURN, build_application

REPLY_ACTIONS = sorted(TURN.reply_actions)  # read off the graph (core/app.py)
SAVES_PER_TURN = 3  # human_input, safety_check, ai_response
MESSAGE_BYTES = 600

WORDS = """
the a of to and in is it that for on with as this was be by at from or an are not have you your we
they he she which but can will would should could there their about into more other some than then
them these when what where why how who all any each few most such only own same so too very just now
state storage database table index query snapshot branch conversation message history model reply user
assistant question answer example function value list key change version format file page row column
python streamlit burr sqlite postgres server client request response token prompt context memory cache
time step turn result error retry stop start build run test check load save write read delete update
small large fast slow simple clear short long first last next previous new old good better best useful
because however therefore although while since unless until before after during through between under
make take give find keep show tell think know want need use try help work call look seem feel become
people team project issue feature design system process method approach problem solution reason case
data text number string object field record entry document section chapter note comment review draft
morning evening weekend holiday travel city river mountain garden kitchen coffee bread music movie book
quickly carefully usually often sometimes rarely never always already still again also perhaps maybe
important possible different available necessary common specific general recent current final main
""".split()


def message_text(rng: random.Random, target: int = MESSAGE_BYTES) -> str:
    """Plausible prose of about `target` UTF-8 bytes: sentences of 6-18 words, some commas."""
    sentences: list[str] = []
    size = 0
    while size < target:
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, 18))]
        if len(words) > 8 and rng.random() < 0.4:
            words[rng.randint(3, len(words) - 3)] += ","
        sentence = " ".join(words).capitalize() + rng.choice(".?.!.")
        sentences.append(sentence)
        size += len(sentence) + 1
    return " ".join(sentences)[:target].rstrip()


def user_message(turn: int, seed: int = 7) -> str:
    return message_text(random.Random(f"user-{seed}-{turn}"))


class InstantModel:
    """A ChatModel that answers at once with deterministic ~600-byte replies (no network, no sleep)."""

    label = "benchmark model"
    offline = True

    def __init__(self, seed: int = 7):
        self.seed = seed

    def stream(self, messages: Sequence[dict], cancel: threading.Event | None = None,
               report: Any = None) -> Iterator[str]:
        turn = sum(1 for m in messages if m.get("role") == "user")
        text = message_text(random.Random(f"assistant-{self.seed}-{turn}"))
        for start in range(0, len(text), 80):
            yield text[start:start + 80]

    def moderate(self, text: str) -> bool:
        return False


def new_app(persister: BaseStatePersister, partition_key: str, app_id: str) -> Application:
    return build_application(partition_key, persister=persister, llm=InstantModel(), app_id=app_id)


def run_turn(app: Application, turn: int) -> int:
    """One user turn to the end of the reply; returns the raw message bytes it added."""
    prompt = user_message(turn)
    _, container = app.stream_result(halt_after=REPLY_ACTIONS, inputs={"prompt": prompt})
    for _ in container:
        pass
    result, _state = container.get()
    return len(prompt.encode("utf-8")) + len(result["response"].encode("utf-8"))
