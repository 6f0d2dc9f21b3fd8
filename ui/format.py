"""Small text formatting helpers shared by the pages (pure, so tests can call them directly)."""
from __future__ import annotations

from datetime import datetime, timezone


def relative_time(when: datetime, now: datetime | None = None) -> str:
    """'just now', '5 min ago', '3 h ago', 'yesterday', '4 days ago', then a date."""
    now = now or datetime.now(timezone.utc)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    seconds = max(0, int((now - when).total_seconds()))
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    days = seconds // 86400
    if days == 1:
        return "yesterday"
    if days < 7:
        return f"{days} days ago"
    return when.strftime("%-d %b") if when.year == now.year else when.strftime("%-d %b %Y")


def short_id(value: str | None, length: int = 8) -> str:
    return (value or "")[:length]


def clip(text: str, limit: int) -> str:
    """One line, at most `limit` characters, with an ellipsis when cut."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def escape_markdown(text: str) -> str:
    """For titles shown inside Markdown labels: user text must not turn into links, bold or colors."""
    for char in "\\`*_{}[]()#+-.!|:<>~$":
        text = text.replace(char, "\\" + char)
    return text
