"""Conversations as trees, in the facade: edit a message or regenerate a reply on a new branch, the
tree of branches, and feedback on replies. A mixin of `ChatService` (core/chat.py), which provides
`_start`, the persister, the lineage and feedback stores; the tree logic itself is core/tree.py.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from core.access import scoped
from core.errors import InputError
from core.runs import Run
from core.storage import Feedback
from core.text import clean_message
from core.tree import ConversationTree, OutlineEntry, outline

if TYPE_CHECKING:
    from core.settings import Settings
    from core.storage import FeedbackStore, Lineage, SQLAlchemyPersister


class BranchingMixin:
    """Edit, regenerate, the tree and feedback (see the module docstring)."""

    settings: "Settings"
    _persister: "SQLAlchemyPersister"
    _lineage: "Lineage"
    _feedback: "FeedbackStore"

    _start: Callable[..., Run]  # ChatService._start(partition_key, app_id, prompt, expected, fork_from)

    @scoped(lambda self, partition_key, app_id, *args, **kwargs: _no_branch(app_id))
    def edit(self, partition_key: str, app_id: str, index: int, text: str) -> Run:
        """Sends a new version of user message `index` on a new branch forked just before it; the old
        branch stays as it was. The run's `app_id` is the new branch."""
        prompt = clean_message(text, self.settings.max_message_chars)
        self._message(partition_key, app_id, index, "user")
        return self._start(partition_key, str(uuid.uuid4()), prompt, None, self._step_with(partition_key, app_id, index))

    @scoped(lambda self, partition_key, app_id, *args, **kwargs: _no_branch(app_id))
    def regenerate(self, partition_key: str, app_id: str, index: int) -> Run:
        """Asks the model again for reply `index`, on a new branch forked just before that reply."""
        self._message(partition_key, app_id, index, "assistant")
        base = self._step_with(partition_key, app_id, index)
        if base is None:
            raise InputError("This reply has no saved step before it to start again from.")
        return self._start(partition_key, str(uuid.uuid4()), None, None, base)

    @scoped(lambda self, partition_key: ConversationTree([]), write=False)
    def tree(self, partition_key: str) -> ConversationTree:
        """Every branch with where it forked: which branch shows which version of each message."""
        return ConversationTree(self._lineage.branches(partition_key))

    @scoped([], write=False)
    def tree_outline(self, partition_key: str) -> list[OutlineEntry]:
        """The branches in tree order, each with the message where it diverges from its parent."""
        tree = self.tree(partition_key)
        first_own: dict[str, dict | None] = {}
        for shape in tree.shapes:
            data = self._persister.load(partition_key, shape.app_id) if shape.length > shape.inherited else None
            history = data["state"].get("chat_history", []) if data else []
            first_own[shape.app_id] = history[shape.inherited] if len(history) > shape.inherited else None
        return outline(tree, first_own)

    @scoped(lambda self, partition_key, app_id, *args, **kwargs: _no_branch(app_id))
    def set_feedback(self, partition_key: str, app_id: str, index: int, thumbs_up: bool | None,
                     comment: str | None = None, tags: tuple[str, ...] = ()) -> Feedback:
        """Rates reply `index` of a branch (thumbs None and no comment clears the rating). The rating
        belongs to the step that wrote the reply, so every branch sharing the reply shows it."""
        self._message(partition_key, app_id, index, "assistant")
        owner = self.tree(partition_key).owner(app_id, index) or app_id
        step = next((s.sequence_id for s in self._lineage.steps(partition_key, owner) if s.messages > index), None)
        if step is None:
            raise InputError("This reply has no saved step to attach a rating to.")
        return self._feedback.set(partition_key, owner, step, index, thumbs_up=thumbs_up, comment=comment, tags=tags)

    @scoped([], write=False)
    def feedback_of_conversation(self, partition_key: str) -> list[Feedback]:
        """Every rating in a conversation, for History and exports."""
        return self._feedback.of_conversation(partition_key)

    def _feedback_on(self, partition_key: str, app_id: str, tree: ConversationTree) -> dict[int, Feedback]:
        return {f.message_index: f for f in self._feedback.of_conversation(partition_key)
                if tree.owner(app_id, f.message_index) == f.app_id}

    def _message(self, partition_key: str, app_id: str, index: int, role: str) -> dict[str, Any]:
        """Message `index` of a branch, which must have `role`; InputError naming what is wrong otherwise."""
        data = self._persister.load(partition_key, app_id) if app_id else None
        if data is None or data["app_id"] != app_id:
            _no_branch(app_id)
        history = data["state"].get("chat_history", [])
        if not isinstance(index, int) or not 0 <= index < len(history) or history[index].get("role") != role:
            kind = "reply" if role == "assistant" else "message of yours"
            raise InputError(f"Message {index} of this branch is not a {kind}.")
        return history[index]

    def _step_with(self, partition_key: str, app_id: str, messages: int) -> tuple[str, int] | None:
        """The last saved step holding exactly `messages` messages in this branch's line (the branch,
        or the one it forked from where those messages came from), or None (before the first message)."""
        tree = self.tree(partition_key)
        shape = tree.get(app_id)
        while shape is not None:
            if messages >= shape.inherited or shape.parent is None:
                steps = [s for s in self._lineage.steps(partition_key, shape.app_id) if s.messages == messages]
                return (shape.app_id, steps[-1].sequence_id) if steps else None
            shape = tree.get(shape.parent)
        return None


def _no_branch(app_id: str) -> None:
    """What an unknown conversation or branch gets (and someone else's, which must look the same)."""
    raise InputError(f"Branch {app_id!r:.60} of this conversation does not exist.")
