"""The floor for `make bench-api`: the least any server built from Burrow's parts can do per turn.

No Burr, no database, no runs, no auth: uvicorn and FastAPI take the request, the `openai` client
streams the model's reply, and each piece goes out as one SSE `data:` line in the OpenAI chunk shape
(so the load speaks to it as to the model itself). What this server costs per turn, and the times it
adds under load, bound from below what Burrow, which also saves every step, can reach on the same
machine. BENCH_FLOOR_MODE picks how the model is read:

- `async` (default): one shared `AsyncOpenAI` client on the event loop, the cheapest way;
- `thread`: a sync `OpenAI` client on a worker thread per turn, the way Burrow's runs read it.

    OPENAI_BASE_URL=http://127.0.0.1:9999/v1 python -m uvicorn --factory bench.api_floor:create_app
"""
from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import AsyncIterator
from typing import Any

import openai
from fastapi import FastAPI, Request
from starlette.responses import StreamingResponse

DONE = "data: [DONE]\n\n"


def _line(piece: str) -> str:
    return f"data: {json.dumps({'choices': [{'delta': {'content': piece}}]})}\n\n"


def _messages(body: dict[str, Any]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": m["content"]} for m in body.get("messages", [])]


async def _from_async(client: openai.AsyncOpenAI, body: dict[str, Any]) -> AsyncIterator[str]:
    stream = await client.chat.completions.create(model="m", messages=_messages(body), stream=True)
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            yield _line(chunk.choices[0].delta.content)
    yield DONE


async def _from_thread(client: openai.OpenAI, body: dict[str, Any]) -> AsyncIterator[str]:
    """The sync client on its own thread, handing pieces to the event loop one by one."""
    loop, pieces = asyncio.get_running_loop(), asyncio.Queue()

    def read() -> None:
        try:
            for chunk in client.chat.completions.create(model="m", messages=_messages(body), stream=True):
                if chunk.choices and chunk.choices[0].delta.content:
                    loop.call_soon_threadsafe(pieces.put_nowait, chunk.choices[0].delta.content)
        finally:
            loop.call_soon_threadsafe(pieces.put_nowait, None)

    threading.Thread(target=read, daemon=True).start()
    while (piece := await pieces.get()) is not None:
        yield _line(piece)
    yield DONE


def create_app() -> FastAPI:
    app = FastAPI()
    threaded = os.environ.get("BENCH_FLOOR_MODE", "async") == "thread"
    limits = {"max_retries": 0, "timeout": 60.0}
    client = openai.OpenAI(**limits) if threaded else openai.AsyncOpenAI(**limits)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/chat/completions")
    async def completions(request: Request) -> StreamingResponse:
        body = await request.json()
        pieces = _from_thread(client, body) if threaded else _from_async(client, body)
        return StreamingResponse(pieces, media_type="text/event-stream")

    return app
