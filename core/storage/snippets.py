"""Ranking and snippets for SQLite search hits, made in Python from the candidate rows' text.

FTS5's snippet() must run under the query's MATCH, and FTS5 evaluates the MATCH again for every row it
is asked about (a prefix expanded again each time); the few rows returned are marked up here instead,
matching words the way the FTS5 table's tokenizer does (unicode61: case folded, diacritics removed).
Ranking is BM25's term-frequency part without document frequencies (tf_scores): FTS5's bm25() counts
each word's documents over every match first, which made a common word's query several times slower.
"""
from __future__ import annotations

import re
import unicodedata

_TOKEN = re.compile(r"\w+", re.UNICODE)
WINDOW, BEFORE = 12, 3  # tokens shown, of which this many before the first match
K1, B = 1.2, 0.75  # BM25's usual constants: how fast repeats saturate, how much length counts
_PUNCTUATION = b"\n\t\r.,;:!?()[]{}<>\"'`*/\\|-"
_SEPARATORS = bytes.maketrans(_PUNCTUATION, b" " * len(_PUNCTUATION))  # UTF-8 safe: ASCII only


def fold(word: str) -> str:
    """A word as the FTS5 tokenizer indexes it: lower case, combining marks removed."""
    if word.isascii():
        return word.lower()
    decomposed = unicodedata.normalize("NFKD", word.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def matches(token: str, words: list[str], prefix: bool) -> bool:
    """Whether a token matches a query word (folded): any one exactly, or the last one as a prefix."""
    folded = fold(token)
    return (prefix and folded.startswith(words[-1])) or folded in words


def snippet(text: str, words: list[str], prefix: bool, start_mark: str, end_mark: str) -> str:
    """About WINDOW tokens of `text` around its first match, matches between the marks, '…' where cut."""
    tokens = list(_TOKEN.finditer(text))
    words = [fold(w) for w in words]
    if not tokens:
        return text[:200]
    hits = [i for i, t in enumerate(tokens) if matches(t.group(), words, prefix)]
    first = max(0, (hits[0] if hits else 0) - BEFORE)
    last = min(len(tokens), first + WINDOW)
    begin, end = (tokens[first].start() if first else 0), (tokens[last - 1].end() if last < len(tokens) else len(text))
    out, at = [], begin
    for i in hits:
        if first <= i < last:
            t = tokens[i]
            out += [text[at:t.start()], start_mark, t.group(), end_mark]
            at = t.end()
    out.append(text[at:end])
    return ("…" if first else "") + "".join(out) + ("…" if last < len(tokens) else "")


def tf_scores(texts: list[str], words: list[str]) -> list[float]:
    """Each text's score for the query words: BM25 without document frequencies (PostgreSQL's ts_rank
    has none either). A word is counted at word starts after lower-casing: a longer word it begins
    counts too (as the last word's prefix match means), a use after an unlisted separator does not."""
    if not texts:
        return []
    needles = [(" " + w).encode() for w in words]
    padded = [(" " + t.lower()).encode().translate(_SEPARATORS) for t in texts]
    average = sum(map(len, padded)) / len(padded) or 1.0
    scores = []
    for text in padded:
        norm = K1 * (1 - B + B * len(text) / average)
        scores.append(sum(tf * (K1 + 1) / (tf + norm) for tf in (text.count(n) for n in needles)))
    return scores
