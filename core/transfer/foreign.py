"""Conversations from other tools: an OpenAI `messages` list and ChatGPT's conversations.json.

Both become the Burr snapshots the app itself writes for each turn (core/app.py):
human_input (the user's message appended, `prompt`), safety_check (`safe`: True; imported text is
not judged again) and ai_response (the reply appended, `response`). System, developer and tool
messages are left out: Burrow sends its own system prompt and keeps no tool calls.
ChatGPT's `mapping` is a tree: every path from the root to a leaf becomes a branch, forked where it
leaves the branch that wrote its previous message, from the step the app's Edit or Regenerate
would fork from (the last step holding exactly the messages they share).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

import ijson

from core.text import plain_text
from core.transfer.model import BranchStart, Incoming, Part, Step, fail

KEPT_ROLES = ("user", "assistant")
SKIPPED_ROLES = ("system", "developer", "tool", "function")


# ---- the snapshots of a list of messages -------------------------------------------------------
def turn_steps(messages: Iterable[dict[str, Any]]) -> Iterator[tuple[int, Step]]:
    """(messages in the history, step) for each step the app would save for these messages."""
    state: dict[str, Any] = {"chat_history": []}
    seq = 0
    for message in messages:
        history = [*state["chat_history"], message]
        if message["role"] == "user":
            state = {**state, "chat_history": history, "__SEQUENCE_ID": seq, "prompt": message["content"],
                     "__PRIOR_STEP": "human_input"}
            yield len(history), Step(seq, "human_input", "completed", state)
            state = {**state, "__SEQUENCE_ID": seq + 1, "__PRIOR_STEP": "safety_check", "safe": True}
            yield len(history), Step(seq + 1, "safety_check", "completed", state)
            seq += 2
        else:
            state = {**state, "chat_history": history, "__SEQUENCE_ID": seq, "__PRIOR_STEP": "ai_response",
                     "response": message["content"]}
            yield len(history), Step(seq, "ai_response", "completed", state)
            seq += 1


def fork_step(messages: list[dict[str, Any]], shared: int) -> int | None:
    """The sequence id of the last step holding exactly `shared` of these messages (None for 0)."""
    found = None
    for length, step in turn_steps(messages[:shared]):
        if length == shared:
            found = step.sequence_id
    return found


# ---- OpenAI messages ---------------------------------------------------------------------------
def openai_message(item: Any, where: str) -> dict[str, Any] | None:
    """A chat message from an OpenAI message object, or None for one Burrow does not keep."""
    if not isinstance(item, dict) or not isinstance(item.get("role"), str):
        raise fail(where, 'not a message (an object with a "role" string)')
    role, content = item["role"], item.get("content")
    if role in SKIPPED_ROLES:
        return None
    if role not in KEPT_ROLES:
        raise fail(where, f"role {role!r:.40} is not one of user, assistant, system, developer, tool")
    if isinstance(content, list):  # content parts: the text ones are kept
        if not all(isinstance(part, dict) for part in content):
            raise fail(where, "content parts must be objects")
        content = "\n".join(str(p.get("text", "")) for p in content if p.get("type") == "text")
    if content is None and item.get("tool_calls"):
        return None
    if not isinstance(content, str):
        raise fail(where, '"content" must be a string or a list of content parts')
    return {"role": role, "content": plain_text(content)}


def read_openai(source: BinaryIO, where: str, prefix: str = "item") -> Incoming:
    """An OpenAI messages list (a JSON array, or an object with "messages") as one branch."""

    def messages() -> Iterator[dict[str, Any]]:
        source.seek(0)
        for number, item in enumerate(ijson.items(source, prefix, use_float=True), 1):
            message = openai_message(item, f"{where}: message {number}")
            if message is not None:
                yield message

    def parts() -> Iterator[Part]:
        yield BranchStart("import-branch-0", None, None)  # the service names the branches
        count = 0
        for count, (_, step) in enumerate(turn_steps(messages()), 1):
            yield step
        if count == 0:
            raise fail(where, "no user or assistant messages")

    return Incoming(None, None, parts, where)


# ---- ChatGPT conversations.json ----------------------------------------------------------------
def read_chatgpt(source: BinaryIO, where: str) -> Iterator[Incoming]:
    """Each conversation of a ChatGPT export (a JSON array of objects with a "mapping")."""
    source.seek(0)
    for number, item in enumerate(ijson.items(source, "item", use_float=True), 1):
        here = f"{where}: item {number}"
        paths, current = chatgpt_paths(item, here)
        if not paths:
            continue  # nothing said in it yet
        title = item.get("title") if isinstance(item.get("title"), str) else None
        source_id = item.get("conversation_id") or item.get("id")
        yield Incoming(source_id if isinstance(source_id, str) else None, title,
                       lambda paths=paths, current=current: _tree_parts(paths, current), here)


def chatgpt_paths(item: Any, where: str) -> tuple[list[list[tuple[str, dict]]], int]:
    """The root-to-leaf paths of kept messages (node id, message) and the index of the shown one."""
    if not isinstance(item, dict) or not isinstance(item.get("mapping"), dict):
        raise fail(where, 'not a ChatGPT conversation (an object with a "mapping")')
    mapping: dict[str, Any] = item["mapping"]
    for node_id, node in mapping.items():
        if not isinstance(node, dict):
            raise fail(where, f"node {node_id} is not an object")
        parent = node.get("parent")
        if not isinstance(parent, (str, type(None))):
            raise fail(where, f"node {node_id}: \"parent\" must be a node id or null")
        if parent is not None and parent not in mapping:
            raise fail(where, f"node {node_id} has no parent in the mapping (it names {str(parent)!r:.60})")
    kept = {node_id: _chatgpt_message(node, f"{where}: node {node_id}") for node_id, node in mapping.items()}
    children: dict[str | None, list[str]] = {}
    for node_id in mapping:
        children.setdefault(_kept_parent(mapping, kept, node_id, where), []).append(node_id)
    paths = _walk(children, kept)
    current = _kept_self_or_parent(mapping, kept, item.get("current_node"), where)
    shown = next((n for n, path in enumerate(paths) if current in (node for node, _ in path)), len(paths) - 1)
    return paths, shown


def _chatgpt_message(node: dict, where: str) -> dict | None:
    message = node.get("message")
    if message is None:
        return None
    author = message.get("author") if isinstance(message, dict) else None
    if not isinstance(author, dict) or not isinstance(author.get("role"), str):
        raise fail(where, "message has no author.role")
    content, metadata = message.get("content") or {}, message.get("metadata") or {}
    if not isinstance(content, dict) or not isinstance(metadata, dict):
        raise fail(where, "message content and metadata must be objects")
    if author["role"] not in KEPT_ROLES or metadata.get("is_visually_hidden_from_conversation"):
        return None
    if content.get("content_type") not in ("text", "multimodal_text"):
        return None  # code, browsing, reasoning and tool output: not chat text
    parts = content.get("parts")
    if not isinstance(parts, list):
        raise fail(where, "message content has no parts list")
    text = "\n".join(p if isinstance(p, str) else "[attachment not imported]" for p in parts).strip()
    if not text:
        return None
    found = {"role": author["role"], "content": plain_text(text)}
    model = metadata.get("model_slug")
    if author["role"] == "assistant" and isinstance(model, str):
        found["model"] = model
    return found


def _kept_parent(mapping: dict, kept: dict, node_id: str, where: str) -> str | None:
    """The nearest ancestor with a kept message (None at the root); a cycle is an error."""
    seen = {node_id}
    parent = mapping[node_id].get("parent")
    while parent is not None and kept.get(parent) is None:
        if parent in seen:
            raise fail(where, f"node {node_id} is its own ancestor (the parents form a cycle)")
        seen.add(parent)
        parent = mapping[parent].get("parent")
    return parent


def _kept_self_or_parent(mapping: dict, kept: dict, node_id: Any, where: str) -> str | None:
    if not isinstance(node_id, str) or node_id not in mapping:
        return None
    return node_id if kept.get(node_id) is not None else _kept_parent(mapping, kept, node_id, where)


def _walk(children: dict, kept: dict) -> list[list[tuple[str, dict]]]:
    """Root-to-leaf paths of kept nodes, depth first in the order the mapping lists them (no recursion:
    a long chat is thousands of levels deep)."""
    paths: list[list[tuple[str, dict]]] = []
    stack: list[tuple[str | None, list]] = [(None, [])]
    while stack:
        at, path = stack.pop()
        below = [child for child in children.get(at, ()) if kept.get(child) is not None]
        if not below and path:
            paths.append(path)
        stack.extend((child, [*path, (child, kept[child])]) for child in reversed(below))
    return paths


def _tree_parts(paths: list[list[tuple[str, dict]]], shown: int) -> Iterator[Part]:
    """Branches for the paths, the shown one written last (so it opens first)."""
    owner: dict[str, str] = {}  # node id -> branch that wrote it
    order = [n for n in range(len(paths)) if n != shown] + [shown]
    for index in order:
        path = paths[index]
        app_id = f"import-branch-{index}"  # the service names the branches
        shared = next((n for n, (node, _) in enumerate(path) if node not in owner), len(path))
        messages = [message for _, message in path]
        fork = fork_step(messages, shared) if shared else None
        parent = owner[path[shared - 1][0]] if fork is not None else None
        yield BranchStart(app_id, parent, fork)
        for _, step in turn_steps(messages):
            if fork is None or step.sequence_id >= fork:
                yield step
        for node, _ in path[shared:]:
            owner[node] = app_id
