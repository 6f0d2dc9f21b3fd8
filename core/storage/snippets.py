"""Snippets for SQLite search hits, made in Python from the returned rows' text.

FTS5's snippet() must run under the query's MATCH, and FTS5 evaluates the MATCH again for every row it
is asked about (a prefix expanded again each time); the few rows returned are marked up here instead,
matching words the way the FTS5 table's tokenizer does (unicode61: case folded, diacritics removed).
"""
from __future__ import annotations

import re
import unicodedata

_TOKEN = re.compile(r"\w+", re.UNICODE)
WINDOW, BEFORE = 12, 3  # tokens shown, of which this many before the first match


def fold(word: str) -> str:
    """A word as the FTS5 tokenizer indexes it: lower case, combining marks removed."""
    decomposed = unicodedata.normalize("NFKD", word.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def matches(token: str, words: list[str], prefix: bool) -> bool:
    """Whether a token matches a query word: any one exactly, or the last one as a prefix."""
    folded = fold(token)
    if prefix and folded.startswith(fold(words[-1])):
        return True
    return any(folded == fold(w) for w in words)


def snippet(text: str, words: list[str], prefix: bool, start_mark: str, end_mark: str) -> str:
    """About WINDOW tokens of `text` around its first match, matches between the marks, '…' where cut."""
    tokens = list(_TOKEN.finditer(text))
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
