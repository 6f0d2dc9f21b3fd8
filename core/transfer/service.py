"""`TransferMixin`: the export and import methods of the ChatService facade.

Import writes a conversation with the persister, step by step, as Burr snapshots (so History and
Fork work on it). It is not one transaction (each save is its own, as in the app); instead a file is
read through once and checked whole before anything is written, and if writing fails midway (the
database went away) everything this import wrote is deleted again. Ids: a conversation keeps its id
when no conversation has it yet (its branches then keep theirs), else it gets a new one.
"""
from __future__ import annotations

import io
import json
import logging
import os
import uuid
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

import ijson
from burr.core import State

from core.access import no_conversation, scoped
from core.app import first_branch_id
from core.errors import InputError, SnapshotConflictError, StorageError
from core.text import is_valid_conversation_id, with_line_breaks
from core.transfer.burrow_json import write_conversation
from core.transfer.model import BranchStart, Incoming, Rating, Step, check_parts, fail
from core.transfer.reading import conversations

if TYPE_CHECKING:
    from core.storage import ConversationStore, FeedbackStore, Lineage, SQLAlchemyPersister

log = logging.getLogger(__name__)
EXPORT_FORMATS = ("json", "markdown", "openai")
ROLE_HEADINGS = {"user": "User", "assistant": "Assistant"}
PAGE = 500


class TransferMixin:
    """Export and import, on the service's persister, catalog, lineage and feedback stores."""

    _persister: "SQLAlchemyPersister"
    _catalog: "ConversationStore"
    _lineage: "Lineage"
    _feedback: "FeedbackStore"

    # ---- export ----------------------------------------------------------------------------------
    @scoped(no_conversation, write=False)
    def export_json(self, partition_key: str, out: TextIO) -> None:
        """Writes the conversation as Burrow JSON (docs/export-format.md), a branch at a time."""
        summary = self._known(partition_key)
        header = {"id": summary.partition_key, "title": summary.title, "created_at": summary.created_at.isoformat(),
                  "updated_at": summary.updated_at.isoformat(), "latest_branch": summary.latest_app_id}
        feedback = [{"app_id": f.app_id, "sequence_id": f.sequence_id, "message_index": f.message_index,
                     "thumbs_up": f.thumbs_up, "comment": f.comment, "tags": list(f.tags),
                     "created_at": f.created_at.isoformat(), "updated_at": f.updated_at.isoformat()}
                    for f in self._feedback.of_conversation(partition_key)]
        shapes = sorted(self._lineage.branches(partition_key), key=lambda s: s.activity)  # latest last
        written: set[str] = set()

        def branches() -> Iterator[tuple[dict[str, Any], dict | None, Iterator[dict[str, Any]]]]:
            for shape in shapes:
                base = (self._persister.load_serialized(partition_key, shape.parent, shape.fork_sequence_id)
                        if shape.parent in written and shape.fork_sequence_id is not None else None)
                written.add(shape.app_id)
                yield ({"app_id": shape.app_id, "parent": shape.parent, "fork_sequence_id": shape.fork_sequence_id,
                        "created_at": shape.created_at.isoformat()}, base, self._export_steps(partition_key, shape.app_id))

        write_conversation(out, header, feedback, branches())

    def _export_steps(self, partition_key: str, app_id: str) -> Iterator[dict[str, Any]]:
        offset = 0
        while page := self._catalog.snapshots(partition_key, app_id, offset, PAGE):
            for step in page:
                entry: dict[str, Any] = {"sequence_id": step.sequence_id, "position": step.position,
                                         "status": step.status, "created_at": step.created_at.isoformat()}
                if step.status == "failed":
                    error, facts = self._catalog.step_error(partition_key, app_id, step.sequence_id)
                    entry.update({"error": error} if error else {}, **({"facts": facts} if facts else {}))
                entry["state"] = self._persister.load_serialized(partition_key, app_id, step.sequence_id)
                yield entry
            offset += len(page)

    @scoped(no_conversation, write=False)
    def export_messages(self, partition_key: str, app_id: str | None = None) -> list[dict[str, str]]:
        """The OpenAI `messages` list of one branch (default: the latest): role and content only."""
        self._known(partition_key)
        data = self._persister.load(partition_key, app_id)
        if data is None or (app_id and data["app_id"] != app_id):
            raise InputError(f"Branch {app_id!r:.60} of this conversation does not exist.")
        return [{"role": m["role"], "content": m["content"]} for m in data["state"].get("chat_history", [])]

    @scoped(no_conversation, write=False)
    def export_markdown(self, partition_key: str, app_id: str | None = None) -> str:
        """One branch as Markdown: the title, then each message under its role, line breaks kept."""
        title = self._known(partition_key).title
        parts = [f"# {title}"]
        for message in self.export_messages(partition_key, app_id):
            heading = ROLE_HEADINGS.get(message["role"], message["role"].title())
            parts.append(f"## {heading}\n\n{with_line_breaks(message['content'])}")
        return "\n\n".join(parts) + "\n"

    @scoped(no_conversation, write=False)
    def export_text(self, partition_key: str, fmt: str = "json", app_id: str | None = None) -> str:
        """An export as one string (for download buttons and the API): json, markdown or openai."""
        if fmt == "markdown":
            return self.export_markdown(partition_key, app_id)
        if fmt == "openai":
            return json.dumps(self.export_messages(partition_key, app_id), ensure_ascii=False, indent=1) + "\n"
        if fmt != "json":
            raise InputError(f"Unknown export format {fmt!r:.40}: use one of {', '.join(EXPORT_FORMATS)}.")
        out = io.StringIO()
        self.export_json(partition_key, out)
        return out.getvalue()

    def export_archive(self, path: str | os.PathLike, progress: Callable[[str], None] | None = None) -> int:
        """Every conversation of the user's as a .zip of Burrow JSON files, written to `path` as it goes; returns the count."""
        count, cursor = 0, None
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            while page := self._catalog.list("", PAGE, cursor, owner=self.listing_owner()):
                for summary in page:
                    with archive.open(f"{summary.partition_key}.json", "w", force_zip64=True) as raw:
                        with io.TextIOWrapper(raw, encoding="utf-8", newline="") as text:
                            self.export_json(summary.partition_key, text)
                    count += 1
                    if progress:
                        progress(summary.partition_key)
                cursor = page[-1].cursor  # pinned rows come first: the cursor knows which group
        return count

    def _known(self, partition_key: str) -> Any:
        summary = self._catalog.get(partition_key) if is_valid_conversation_id(partition_key) else None
        if summary is None:
            raise InputError(f"No conversation {partition_key!r:.60}.")
        return summary

    # ---- import ----------------------------------------------------------------------------------
    def import_file(self, source: BinaryIO | str | os.PathLike, name: str | None = None,
                    progress: Callable[[str], None] | None = None) -> list[str]:
        """Imports every conversation of a file; returns their ids (new ones where the old were taken).

        A bad file raises one InputError naming the problem and writes nothing; a failed write
        deletes what this import wrote and raises (StorageError). `progress` hears each id written."""
        with _opened(source) as (stream, label):
            label = name or label
            try:
                for incoming in conversations(stream, label):  # the whole file checked first
                    check_parts(incoming)
                return self._write_all(stream, label, progress)
            except ijson.JSONError as exc:
                reason = (str(exc).strip().splitlines() or ["no detail"])[0]
                raise fail(label, f"not valid JSON, or cut off ({reason}, near byte {stream.tell():,})") from exc
            except UnicodeDecodeError as exc:
                raise fail(label, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc

    def _write_all(self, stream: BinaryIO, label: str, progress: Callable[[str], None] | None) -> list[str]:
        written: list[str] = []  # ids this import has saved a step to: only these are deleted on failure
        try:
            for incoming in conversations(stream, label):
                try:
                    self._write(incoming, self._free_id(incoming.source_id), written)
                except _Taken:  # another writer took the free id just now: never touch its conversation
                    self._write(incoming, uuid.uuid4().hex, written)
                if progress:
                    progress(written[-1])
        except BaseException as exc:
            self._undo(written, exc)
            raise
        return written

    def _undo(self, written: list[str], cause: BaseException) -> None:
        """Deletes what a failed import wrote; if that fails too, says which ids are left."""
        log.warning("import failed after writing %d conversation(s); deleting them: %s", len(written), cause)
        try:
            for partition_key in written:
                self._catalog.delete(partition_key)
        except StorageError as exc:
            raise StorageError(f"The import failed ({cause}) and what it wrote could not be deleted ({exc}): "
                               f"delete conversations {', '.join(written)} by hand.") from exc

    def _free_id(self, wanted: str | None) -> str:
        if wanted and is_valid_conversation_id(wanted) and self._catalog.get(wanted) is None \
                and not self._persister.list_app_ids(wanted):
            return wanted
        return uuid.uuid4().hex

    def _write(self, incoming: Incoming, partition_key: str, written: list[str]) -> None:
        """Saves one conversation under `partition_key`, appended to `written` once its first step is saved."""
        name = _branch_namer(incoming, partition_key)
        branch: BranchStart | None = None
        first = True
        for part in incoming.parts():
            if isinstance(part, BranchStart):
                branch, first = part, True
            elif isinstance(part, Step) and branch is not None:
                forked = (name(branch.parent), branch.fork_sequence_id) if first and branch.parent else None
                try:
                    self._claim(partition_key)  # the importing user's, from its first step on
                    self._restore_step(partition_key, name(branch.app_id), part, forked)
                except SnapshotConflictError as exc:
                    if partition_key not in written:
                        raise _Taken() from exc
                    raise
                if partition_key not in written:
                    written.append(partition_key)
                first = False
            elif isinstance(part, Rating):
                self._feedback.set(partition_key, name(part.app_id), part.sequence_id, part.message_index,
                                   thumbs_up=part.thumbs_up, comment=part.comment, tags=part.tags)
        title = incoming.title and incoming.title.strip()
        if title and (self._catalog.get(partition_key) or _NoTitle).title != title:
            self._catalog.rename(partition_key, title)
        self._persister.forget(partition_key)  # its branches' last states: an archive would keep them all

    def _restore_step(self, partition_key: str, app_id: str, step: Step, forked_from: tuple | None) -> None:
        """Saves one snapshot as Burr would have (the state exactly as it was stored)."""
        state = State(step.state) if step.plain else State.deserialize(step.state)
        extra = {"forked_from": forked_from} if forked_from else {}
        self._persister.save(partition_key, app_id, step.sequence_id, step.position, state, step.status, **extra)
        if step.status == "failed" and (step.error or step.facts):
            self._catalog.note_failure(partition_key, app_id, step.error or "", step.facts)


class _NoTitle:
    title = None


class _Taken(Exception):
    """The first save of a conversation met another writer's step: the id was taken after it was chosen."""


def _branch_namer(incoming: Incoming, partition_key: str) -> Callable[[str], str]:
    """Branch ids in the new conversation: kept for Burrow JSON under its own id; otherwise the first
    branch gets the conversation's derived first-branch id (as the app gives it) and others new uuids."""
    if incoming.keeps_branch_ids and incoming.source_id == partition_key:
        return lambda app_id: app_id
    original_first = first_branch_id(incoming.source_id) if incoming.keeps_branch_ids else None
    names: dict[str, str] = {}

    def name(app_id: str) -> str:
        if app_id not in names:
            first = app_id == original_first if original_first else not names
            names[app_id] = first_branch_id(partition_key) if first else str(uuid.uuid4())
        return names[app_id]

    return name


@contextmanager
def _opened(source: BinaryIO | str | os.PathLike) -> Iterator[tuple[BinaryIO, str]]:
    """A seekable binary stream of the source and a name for messages; InputError for a missing file."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            stream = path.open("rb")
        except OSError as exc:
            raise InputError(f"{path}: cannot be read ({exc.strerror or exc}).") from exc
        with stream:
            yield stream, path.name
        return
    if not source.seekable():
        raise InputError("The file to import must be seekable (a file, not a pipe).")
    yield source, getattr(source, "name", None) or "upload"
