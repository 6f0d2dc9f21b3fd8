"""Full-text search in message text and titles, for the service facade (issue 15; being built)."""
from __future__ import annotations


class SearchMixin:
    """ChatService's search methods (core/chat.py mixes it in); scoped to `self.user`."""
