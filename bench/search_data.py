"""The search benchmark's data: a Zipf-distributed vocabulary, conversations saved through the persister,
the queries of each kind, and the index's size against the raw message text.

Each conversation is saved as one step holding its whole history (the persister's own save: chunks,
catalog row and search rows in one transaction), so 1,000,000 messages load in minutes; the search
rows are the ones a step-by-step chat writes (tests/persistence/test_search*.py check that).
"""
from __future__ import annotations

import itertools
import random
import time

import numpy as np

from burr.core import State
from sqlalchemy import text

from core.storage import SQLAlchemyPersister

SYLLABLES = ("ka ri to mu ne sa lo pe vi da go ha ji ku me na or si tu wa ye zo ba ce di fo gu hi el".split())
VOCABULARY = 200_000


def vocabulary(size: int = VOCABULARY) -> list[str]:
    """Distinct pseudo-words, shortest first (frequent words are short, as in real text)."""
    words: list[str] = []
    for length in itertools.count(1):
        for parts in itertools.product(SYLLABLES, repeat=length):
            words.append("".join(parts))
            if len(words) == size:
                return words
    return words


class Corpus:
    """Messages of 10 to 110 words drawn with Zipf weights 1/rank (about 330 bytes on average), made
    up front with numpy (the same seed gives the same messages for every database)."""

    def __init__(self, messages: int, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        self.words = np.array(vocabulary(), dtype=object)
        weights = 1 / np.arange(1, len(self.words) + 1)
        lengths = rng.integers(10, 111, size=messages)
        drawn = rng.choice(len(self.words), size=int(lengths.sum()), p=weights / weights.sum())
        self.occurrences = np.bincount(drawn, minlength=len(self.words))  # ~ messages holding it, for rare words
        ends = np.cumsum(lengths)
        self.texts = [" ".join(self.words[drawn[e - n:e]]) for e, n in zip(ends, lengths)]

    def histories(self, conversations: int, per_conversation: int):  # noqa: ANN201 - an iterator of message lists
        for start in range(0, conversations * per_conversation, per_conversation):
            yield [{"role": "user" if i % 2 == 0 else "assistant", "content": t}
                   for i, t in enumerate(self.texts[start:start + per_conversation])]


def seed(p: SQLAlchemyPersister, corpus: Corpus, conversations: int, messages: int, log_every: int = 1000) -> float:
    """Saves the corpus's first messages as conversations of `messages` each; returns the seconds it took."""
    start = time.perf_counter()
    for c, history in enumerate(corpus.histories(conversations, messages)):
        p.save(f"c{c}", "main", 0, "human_input", State({"chat_history": history}), "completed")
        if log_every and (c + 1) % log_every == 0:
            print(f"  {c + 1} conversations saved, {time.perf_counter() - start:.0f} s", flush=True)
    return time.perf_counter() - start


def queries(corpus: Corpus, per_kind: int) -> dict[str, list[str]]:
    """Queries of each kind, from the words actually used: rare (5 to 100 uses), common (the 20 most
    used: each in a fifth to nearly all of the messages), phrase (three words of middling use, all
    required), prefix (the first three letters of a frequent word, as typed)."""
    rng = random.Random(11)
    total = len(corpus.texts)
    order = np.argsort(-corpus.occurrences)
    used = [(str(corpus.words[i]), int(corpus.occurrences[i])) for i in order if corpus.occurrences[i]]
    rare = [w for w, n in used if 5 <= n <= 100]
    middle = [w for w, n in used if total / 500 <= n <= total / 20]
    prefixes = sorted({w[:3] for w, _ in used[:2000] if len(w) >= 4})
    return {"rare word": [rng.choice(rare) for _ in range(per_kind)],
            "common word": [rng.choice([w for w, _ in used[:20]]) for _ in range(per_kind)],
            "phrase (3 words)": [" ".join(rng.sample(middle, 3)) for _ in range(per_kind)],
            "prefix (3 letters)": [rng.choice(prefixes) for _ in range(per_kind)]}


def index_size(p: SQLAlchemyPersister) -> dict[str, float]:
    """Bytes of the raw message text and of what search stores: the rows (which hold the text once) and
    the full-text index proper (FTS5's shadow tables; PostgreSQL's tsv column is in the rows' bytes)."""
    with p.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            raw = conn.execute(text("SELECT sum(length(CAST(content AS BLOB))) FROM burrow_search_messages")).scalar()
            sizes = dict(conn.execute(text("SELECT name, sum(pgsize) FROM dbstat GROUP BY name")).all())
            fts = sum(v for k, v in sizes.items() if k.startswith("burrow_search_fts"))
            rows = sizes.get("burrow_search_messages", 0) + sum(
                v for k, v in sizes.items() if k.startswith("sqlite_autoindex_burrow_search_messages"))
        else:
            raw = conn.execute(text("SELECT sum(octet_length(content)) FROM burrow_search_messages")).scalar()
            fts = conn.execute(text("SELECT pg_relation_size('ix_burrow_search_messages_terms')")).scalar()
            rows = conn.execute(text("SELECT pg_total_relation_size('burrow_search_messages')")).scalar() - fts
    return {"raw": float(raw or 0), "rows": float(rows), "fts": float(fts)}
