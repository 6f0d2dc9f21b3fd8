"""Text rules in one place: what every stored text is cleaned of, what a message may be, titles, ids in
links, line breaks kept in Markdown, and links instead of images.

Message text is untrusted (users paste anything; models repeat anything). Three kinds of
characters are removed before anything is stored or shown:
- C0 control characters and DEL (NUL breaks PostgreSQL text; the others are invisible),
- bidirectional overrides and isolates (U+202A-U+202E, U+2066-U+2069): they reorder what
  follows, so `invoice_\u202egnp.exe` displays as `invoice_exe.png`; right-to-left scripts
  render correctly without them,
- in titles also the invisible zero-width characters (U+200B, U+2060, U+FEFF, U+180E), which make
  two identical-looking titles differ. Zero-width joiners (U+200C, U+200D) stay: emoji sequences
  and Persian need them.
Tab, newline and carriage return are kept in messages (line breaks are part of a message).
"""
from __future__ import annotations

import re

from core.errors import InputError

TITLE_CHARS = 80  # one limit for titles taken from a first message and for titles a user types
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202a-\u202e\u2066-\u2069]")
_INVISIBLE = re.compile(r"[\u200b\u2060\ufeff\u180e]")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
# "![alt](url)" and "![alt][ref]": the "!" turns a link into an image that loads by itself.
_IMAGE = re.compile(r"!\[(?=[^\]\n]*\]\s*[(\[])")
# Markdown that a title shows as noise: fences, headings, quotes, list bullets, emphasis, code ticks.
_FENCE = re.compile(r"^\s*(```|~~~).*$", re.MULTILINE)
_LINE_MARKS = re.compile(r"^\s{0,3}(#{1,6}\s+|>\s?|[-*+]\s+|\d+[.)]\s+)", re.MULTILINE)
_INLINE_MARKS = re.compile(r"(\*\*|__|~~|\*)(?=\S)(.+?)(?<=\S)\1")  # single _ is left: snake_case names
_TICKS = re.compile(r"`+")
_LINK = re.compile(r"!?\[([^\]\n]*)\]\([^)\n]*\)")


def plain_text(text: str) -> str:
    """Text every database stores: broken Unicode replaced, control and bidi-override characters removed."""
    return _CONTROL.sub("", text.encode("utf-8", "replace").decode("utf-8"))


def title_text(text: str, limit: int = TITLE_CHARS) -> str:
    """One line of plain text: cleaned, invisible characters and Markdown marks removed, whitespace
    collapsed, at most `limit` characters."""
    text = _INVISIBLE.sub("", plain_text(text))
    text = _LINK.sub(r"\1", _FENCE.sub("", text))
    text = _INLINE_MARKS.sub(r"\2", _TICKS.sub("", _LINE_MARKS.sub("", text)))
    return " ".join(text.split())[:limit].rstrip()


def is_valid_conversation_id(value: str | None) -> bool:
    """Conversation ids in URLs: letters, digits and - _ . : only, at most 128 characters."""
    return bool(value) and _ID.fullmatch(value) is not None


def without_remote_images(text: str) -> str:
    """Markdown images become links labelled as images, so no viewer's browser fetches a URL planted
    in a message (a tracking pixel); everything else is left alone."""
    return _IMAGE.sub("[image: ", text)


def with_line_breaks(text: str) -> str:
    """Markdown that keeps the writer's line breaks: a single newline becomes a hard break (two trailing
    spaces), as chat apps show it, except inside fenced code blocks, where lines are kept as they are."""
    out: list[str] = []
    fenced = False
    lines = text.split("\n")
    for number, line in enumerate(lines):
        if _FENCE.match(line):
            fenced = not fenced
        following = lines[number + 1] if number + 1 < len(lines) else None
        breaks = (not fenced and following is not None and line.strip() and following.strip()
                  and not _FENCE.match(line) and not _FENCE.match(following) and not line.endswith("  "))
        out.append(line + "  " if breaks else line)
    return "\n".join(out)


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
