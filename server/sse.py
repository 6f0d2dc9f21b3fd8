"""A run's events as Server-Sent Events, and as one JSON answer for clients that do not stream.

A stream holds no thread: the run's publishing thread wakes the event loop, which writes what has
come (core/runs.py `on_event` / `since`). The loop never blocks, the shared worker pool stays free
for requests however many streams are open, and a client that hangs up only ends its stream.
"""
from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response, StreamingResponse

from core.chat import EventKind, Run
from core.runs import RunEvent
from server.errors import BUSY_RETRY_AFTER, STORAGE_RETRY_AFTER, ApiProblem, problem

POLL = 1.0  # seconds between keep-alives of a JSON answer's wait (nothing is sent; it only wakes)
KEEPALIVE = ": keep-alive\n\n"  # an SSE comment: keeps proxies from closing a quiet stream
LLM_TIMEOUTS = {"timeout"}


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
    """The run's events after `after`, in the batches that arrived together. The publishing thread
    only wakes the event loop (at most one wake-up pending per stream), and the loop takes whatever
    has come since: no thread per stream, and a busy loop writes several events at once. None after
    each `keepalive` seconds of silence (the caller sends a keep-alive comment then)."""
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()
    pending = False  # a wake-up is on its way to the loop: the publisher need not send another

    def wake() -> None:  # on the publishing thread
        nonlocal pending
        if not pending:
            pending = True
            try:
                loop.call_soon_threadsafe(ready.set)
            except RuntimeError:  # the event loop has closed (server shutdown)
                pass

    stop = run.on_event(wake)
    position = after + 1
    try:
        while True:
            pending = False
            ready.clear()
            fresh = run.since(position)  # read after clearing: an event published meanwhile wakes us again
            if fresh:
                yield fresh
                position = fresh[-1].index + 1
                if fresh[-1].kind is EventKind.DONE:
                    return
                continue
            if run.done:
                return  # attached after the end: nothing more will come
            try:
                await asyncio.wait_for(ready.wait(), keepalive)
            except TimeoutError:
                yield None
    finally:
        stop()  # the client left (or the run ended): the run goes on without this stream


async def watched(run: Run, after: int, keepalive: float) -> AsyncIterator[RunEvent | None]:
    """`batches`, one event at a time."""
    async for batch in batches(run, after, keepalive):
        if batch is None:
            yield None
            continue
        for event in batch:
            yield event


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
