"""A run's events as Server-Sent Events, and as one JSON answer for clients that do not stream.

`run.events()` blocks, so each stream reads it on a thread of its own and hands the events to the
event loop: the loop never blocks, the shared worker pool stays free for requests however many
streams are open, a client that hangs up is noticed within a second, and the run goes on without it.
"""
from __future__ import annotations

import asyncio
import json
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response, StreamingResponse

from core.chat import EventKind, Run
from core.runs import RunEvent
from server.errors import BUSY_RETRY_AFTER, STORAGE_RETRY_AFTER, ApiProblem, problem

POLL = 1.0  # seconds a worker thread waits for an event before handing control back
KEEPALIVE = ": keep-alive\n\n"  # an SSE comment: keeps proxies from closing a quiet stream
LLM_TIMEOUTS = {"timeout"}
_END = object()  # what the pump puts on the queue after the last event


def wants_stream(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")


def last_event_id(request: Request, after: int | None = None) -> int:
    """Where a re-attaching client stands: the Last-Event-ID header (or `?after=`); -1 for the start."""
    raw = request.headers.get("last-event-id")
    if raw is not None and raw.strip().lstrip("-").isdigit():
        return int(raw.strip())
    return after if after is not None else -1


def encode(event_id: int, kind: str, data: dict[str, Any]) -> str:
    return f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data, default=str, ensure_ascii=False)}\n\n"


async def batches(run: Run, after: int, keepalive: float) -> AsyncIterator[list[RunEvent] | None]:
    """The run's events after `after`, in the batches that arrived together, handed to the event loop
    by a thread of this stream's own (not one of the shared worker pool's, which hundreds of open
    streams would exhaust). A busy loop finds several events waiting and writes them at once. None
    after each `keepalive` seconds of silence (the caller sends a keep-alive comment then)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[RunEvent | None | object] = asyncio.Queue()
    gone = threading.Event()
    thread = threading.Thread(target=_pump, args=(run, after, min(POLL, keepalive), loop, queue, gone),
                              name=f"burrow-sse-{run.id[:8]}", daemon=True)
    thread.start()
    silent_since = time.monotonic()
    try:
        while True:
            items = [await queue.get()]
            while not queue.empty():
                items.append(queue.get_nowait())
            events = [item for item in items if isinstance(item, RunEvent)]
            if events:
                silent_since = time.monotonic()
                yield events
            elif time.monotonic() - silent_since >= keepalive:
                silent_since = time.monotonic()
                yield None
            if any(item is _END for item in items):
                return
    finally:
        gone.set()  # the client left (or the run ended): the thread stops at its next heartbeat


async def watched(run: Run, after: int, keepalive: float) -> AsyncIterator[RunEvent | None]:
    """`batches`, one event at a time."""
    async for batch in batches(run, after, keepalive):
        if batch is None:
            yield None
            continue
        for event in batch:
            yield event


def _pump(run: Run, after: int, heartbeat: float, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue,
          gone: threading.Event) -> None:
    """Reads `run.events()` (blocking) and puts each event, each heartbeat's None and the end on `queue`."""
    def put(item: object) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the event loop has closed (server shutdown)
            gone.set()

    try:
        for event in run.events(after=after, heartbeat=heartbeat):
            if gone.is_set():
                return
            put(event)
    finally:
        put(_END)


async def event_stream(run: Run, after: int, keepalive: float) -> AsyncIterator[str]:
    async for batch in batches(run, after, keepalive):
        yield KEEPALIVE if batch is None else "".join(
            encode(event.index, event.kind.value, {"run_id": run.id, **event.data}) for event in batch)


def stream_response(run: Run, after: int, keepalive: float, headers: dict[str, str] | None = None,
                    status_code: int = 200) -> StreamingResponse:
    return StreamingResponse(event_stream(run, after, keepalive), status_code=status_code,
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no",
                                      "X-Burrow-Run": run.id, "X-Burrow-Process": str(os.getpid()),
                                      **(headers or {})})  # X-Burrow-Process: which of several workers


def run_result(run: Run) -> dict[str, Any]:
    """Blocks until the run is done (call on a worker thread); see `result_of`."""
    return result_of(run, [event for event in run.events() if event is not None])


def result_of(run: Run, events: list[RunEvent]) -> dict[str, Any]:
    """A finished run's outcome, reply and sequence id, or ApiProblem for a failed turn (502/504
    for the model, 503 database, 429 busy, 409 conflict)."""
    completed: dict[str, Any] = {}
    error: dict[str, Any] | None = None
    outcome = None
    for event in events:
        if event.kind is EventKind.COMPLETED:
            completed = event.data
        elif event.kind is EventKind.ERROR:
            error = event.data
        elif event.kind is EventKind.DONE:
            outcome = event.data.get("outcome")
    if error is not None and not completed:
        raise failure(run, error)
    return {"run_id": run.id, "outcome": outcome, "message": completed.get("message"),
            "sequence_id": completed.get("sequence_id"), "branch": run.app_id}


def failure(run: Run, error: dict[str, Any]) -> ApiProblem:
    kind = error.get("kind", "unknown")
    extra = {"run_id": run.id, "kind": kind, "retryable": error.get("retryable", True), "saved": error.get("saved")}
    if kind == "storage":
        return ApiProblem(503, error["message"], headers={"Retry-After": STORAGE_RETRY_AFTER}, **extra)
    if kind == "busy":
        return ApiProblem(429, error["message"], headers={"Retry-After": BUSY_RETRY_AFTER}, **extra)
    if kind == "conflict":
        return ApiProblem(409, error["message"], **extra)
    return ApiProblem(504 if kind in LLM_TIMEOUTS else 502, error["message"], headers=model_retry_after(run), **extra)


def model_retry_after(run: Run) -> dict[str, str]:
    """A rate-limited model's own Retry-After, passed on, so clients (the openai SDK too) wait that long."""
    seconds = getattr(run.error, "retry_after", None)
    return {"Retry-After": str(max(1, math.ceil(seconds)))} if seconds else {}


class RunJSON(Response):
    """The JSON answer of a run, written when the run is done. The route returns it at once and the
    wait happens on the event loop, so clients that do not stream hold no worker thread each (a few
    dozen of them would otherwise hold the whole pool, and every other request would wait).
    `shape` turns the result into the body, or raises ApiProblem; headers set on this response go
    on the answer, problem or not."""

    def __init__(self, run: Run, status_code: int = 200,
                 shape: Callable[[dict[str, Any]], Any] | None = None):
        self.run, self.status_code, self.shape = run, status_code, shape
        self.background = None
        self.raw_headers: list[tuple[bytes, bytes]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        events = [event async for event in watched(self.run, -1, POLL) if event is not None]
        try:
            result = result_of(self.run, events)
            answer: Response = JSONResponse(jsonable_encoder(self.shape(result) if self.shape else result),
                                            status_code=self.status_code)
        except ApiProblem as exc:
            answer = problem(exc.status, exc.detail, exc.headers, **exc.extra)
        present = {name for name, _ in answer.raw_headers}
        answer.raw_headers += [(name, value) for name, value in self.raw_headers if name not in present]
        await answer(scope, receive, send)


def json_result(run: Run, status_code: int = 200,
                shape: Callable[[dict[str, Any]], Any] | None = None) -> RunJSON:
    return RunJSON(run, status_code, shape)
