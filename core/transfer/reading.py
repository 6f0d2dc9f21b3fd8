"""Which kind of file an import got, and its conversations one after another.

Recognised from the content, not the name: a .zip archive (of Burrow JSON files, as `burrow export
--all` writes), Burrow JSON, a ChatGPT conversations.json, an OpenAI messages list (a JSON array of
messages, or an object with "messages"). Every reader streams (ijson), so a large file is never
held in memory whole; the source must be seekable (it is read more than once).
"""
from __future__ import annotations

import zipfile
from collections.abc import Iterator
from typing import BinaryIO

import ijson

from core.transfer.burrow_json import first_value, read_burrow
from core.transfer.foreign import read_chatgpt, read_openai
from core.transfer.model import Incoming, fail

_ZIP = b"PK\x03\x04"


def conversations(source: BinaryIO, name: str) -> Iterator[Incoming]:
    """The file's conversations; each stays readable until the next one is asked for."""
    head = _head(source)
    if head.startswith(_ZIP):
        yield from _archive(source, name)
    elif head.startswith(b"{"):
        yield _object(source, name)
    elif head.startswith(b"["):
        yield from _array(source, name)
    else:
        raise fail(name, "not a Burrow JSON, ChatGPT conversations.json, OpenAI messages list or .zip archive")


def _head(source: BinaryIO) -> bytes:
    source.seek(0)
    head = source.read(64).lstrip()
    return head.removeprefix(b"\xef\xbb\xbf").lstrip()


def _object(source: BinaryIO, name: str) -> Incoming:
    keys = _top_keys(source, ("format", "messages", "mapping"))
    if "format" in keys:
        return read_burrow(source, name)
    if "messages" in keys:
        return read_openai(source, name, prefix="messages.item")
    if "mapping" in keys:
        raise fail(name, "one ChatGPT conversation: import the whole conversations.json (a list) instead")
    raise fail(name, 'a JSON object that is neither Burrow JSON (no "format") nor {"messages": [...]}')


def _array(source: BinaryIO, name: str) -> Iterator[Incoming]:
    first = first_value(source, "item")
    if isinstance(first, dict) and "mapping" in first:
        yield from read_chatgpt(source, name)
    elif isinstance(first, dict) and "role" in first:
        yield read_openai(source, name)
    elif isinstance(first, dict) or first is None:
        raise fail(name, "item 1: neither a ChatGPT conversation (no \"mapping\") nor a message (no \"role\")")
    else:
        raise fail(name, "an empty list, or a list of something other than conversations or messages")


def _top_keys(source: BinaryIO, wanted: tuple[str, ...]) -> set[str]:
    """Which of `wanted` the top-level object has (reading events only: no value is built)."""
    source.seek(0)
    found: set[str] = set()
    for prefix, event, value in ijson.parse(source):
        if prefix == "" and event == "map_key" and value in wanted:
            found.add(value)
            if value == "format":
                break
    return found


def _archive(source: BinaryIO, name: str) -> Iterator[Incoming]:
    source.seek(0)
    try:
        archive = zipfile.ZipFile(source)
    except zipfile.BadZipFile as exc:
        raise fail(name, f"a damaged .zip archive ({exc})") from exc
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir() and m.filename.endswith(".json")]
        if not members:
            raise fail(name, "the archive holds no .json files")
        for member in members:
            with archive.open(member) as inner:
                yield from conversations(inner, f"{name}: {member.filename}")
