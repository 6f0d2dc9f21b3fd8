"""The API's response shapes, for the OpenAPI document: clients (and the schema tests) hold every
response to them, errors included, so each route declares the statuses it can answer with."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from server.errors import PROBLEM, TITLES

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object", "title": "Problem", "additionalProperties": True,
    "required": ["type", "title", "status", "detail"],
    "properties": {"type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                   "detail": {"type": "string"}},
}
INT64 = 2**63 - 1  # the databases' integer range: a number beyond it is a 422, not a driver error
# A message the facade accepts has a character that is neither white space nor one it removes (core/text.py).
MessageText = Annotated[str, Field(min_length=1, pattern=r"[^\s\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202a-\u202e\u2066-\u2069]")]
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again", "required": True,
                               "schema": {"type": "string"}}}
SSE = {"text/event-stream": {"schema": {"type": "string"}}}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for these error statuses, as problem+json; the database (503) can fail anywhere."""
    found: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*statuses, 503}):
        entry: dict[str, Any] = {"description": TITLES[status], "content": {PROBLEM: {"schema": PROBLEM_SCHEMA}}}
        if status in (429, 503):
            entry["headers"] = RETRY_AFTER
        elif status == 502:  # passed on from a rate-limited model, when it said
            entry["headers"] = {"Retry-After": {**RETRY_AFTER["Retry-After"], "required": False}}
        found[status] = entry
    return found


def streams(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Like `problems`, plus a 200 that may also be a Server-Sent Events stream."""
    return {200: {"description": "JSON, or with `Accept: text/event-stream` a stream of run events",
                  "content": SSE}, **problems(*statuses)}


class Health(BaseModel):
    status: str


class Conversation(BaseModel):
    id: str
    title: str
    created_at: datetime
    updated_at: datetime
    message_count: int
    branch: str | None
    activity: int | None
    replying: bool | None = None
    pinned: bool = False  # listed first, never pruned by retention
    owner: str | None = None  # the subject of the user it belongs to ("local" without sign-in)


class ConversationPage(BaseModel):
    items: list[Conversation]
    next_cursor: int | None


class Messages(BaseModel):
    branch: str | None
    sequence_id: int | None
    messages: list[dict[str, Any]]
    failed_step: str | None
    failure: str | None
    run_id: str | None


class SendResult(BaseModel):
    run_id: str
    outcome: str | None
    message: dict[str, Any] | None
    sequence_id: int | None
    branch: str | None


class StopAccepted(BaseModel):
    run_id: str
    stopping: bool


class Step(BaseModel):
    sequence_id: int
    position: str
    status: str
    created_at: datetime
    stored_bytes: int
    error: str | None = None


class Steps(BaseModel):
    branch: str
    total: int
    items: list[Step]


class StepDiff(BaseModel):
    added: dict[str, Any]
    changed: dict[str, Any]
    removed: dict[str, Any]
    appended: dict[str, Any]


class StepDetail(Step):
    branch: str
    state: dict[str, Any]
    previous: dict[str, Any] | None
    diff: StepDiff
    next_action: str | None


class ForkOrigin(BaseModel):
    branch: str
    sequence_id: int


class Fork(BaseModel):
    id: str
    branch: str
    forked_from: ForkOrigin


class Model(BaseModel):
    id: str
    object: str
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: str
    data: list[Model]


class ChatCompletion(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    object: str
    created: int
    model: str
    choices: list[dict[str, Any]]
    usage: dict[str, int]
