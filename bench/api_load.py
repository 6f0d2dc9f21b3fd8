"""The simulated users of `make bench-api`: asyncio tasks in one process, each with its own
conversation, sending a message, reading the SSE stream to its end, thinking, and again, until the
deadline. One `Protocol` per server kind says how to create, send, read a stream and read back."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx


@dataclasses.dataclass
class Turn:
    user: int
    conversation: str
    question: str
    ttft: float | None = None  # seconds from sending to the first piece of the reply
    total: float | None = None  # seconds from sending to the end of the stream
    reply: str = ""
    error: str | None = None


async def sse_lines(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """(event, data) per SSE event; event is "" when the server names none."""
    event, data = "", []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = "", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


class Burrow:
    """Burrow's API: POST /api/v1/conversations, then messages with Accept: text/event-stream."""

    name = "burrow"

    async def create(self, http: httpx.AsyncClient) -> str:
        response = await http.post("/api/v1/conversations")
        response.raise_for_status()
        return response.json()["id"]

    def request(self, http: httpx.AsyncClient, cid: str, text: str) -> Any:
        return http.stream("POST", f"/api/v1/conversations/{cid}/messages", json={"content": text},
                           headers={"Accept": "text/event-stream"})

    def piece(self, event: str, data: str) -> tuple[str | None, str | None]:
        """(reply text, error) of one event."""
        if event == "message.delta":
            return json.loads(data)["text"], None
        if event == "error":
            return None, json.loads(data).get("kind", "error")
        return None, None

    async def history(self, http: httpx.AsyncClient, cid: str) -> list[dict[str, Any]]:
        response = await http.get(f"/api/v1/conversations/{cid}/messages")
        return response.json()["messages"] if response.status_code == 200 else []


class Reference:
    """The Burr example's routes: /create, /response (bare `data:` deltas), /history."""

    name = "reference"
    project = "bench"

    async def create(self, http: httpx.AsyncClient) -> str:
        cid = uuid.uuid4().hex
        response = await http.post(f"/create/{self.project}/{cid}")
        response.raise_for_status()
        return cid

    def request(self, http: httpx.AsyncClient, cid: str, text: str) -> Any:
        return http.stream("POST", f"/response/{self.project}/{cid}", json={"prompt": text})

    def piece(self, event: str, data: str) -> tuple[str | None, str | None]:
        item = json.loads(data)
        return (item["value"], None) if item.get("type") == "delta" else (None, None)

    async def history(self, http: httpx.AsyncClient, cid: str) -> list[dict[str, Any]]:
        response = await http.get(f"/history/{self.project}/{cid}")
        return response.json() if response.status_code == 200 else []


class ModelAlone:
    """The fake model itself, streamed the same way: what the model's own time is under this load."""

    name = "model"

    async def create(self, http: httpx.AsyncClient) -> str:
        return uuid.uuid4().hex

    def request(self, http: httpx.AsyncClient, cid: str, text: str) -> Any:
        return http.stream("POST", "/chat/completions", json={
            "model": "m", "stream": True, "messages": [{"role": "user", "content": text}]})

    def piece(self, event: str, data: str) -> tuple[str | None, str | None]:
        if data == "[DONE]":
            return None, None
        choices = json.loads(data).get("choices") or [{}]
        return choices[0].get("delta", {}).get("content") or None, None

    async def history(self, http: httpx.AsyncClient, cid: str) -> list[dict[str, Any]]:
        return []


async def one_turn(protocol: Any, http: httpx.AsyncClient, turn: Turn) -> None:
    sent = time.perf_counter()
    try:
        async with protocol.request(http, turn.conversation, turn.question) as response:
            if response.status_code != 200:
                turn.error = f"HTTP {response.status_code}"
                await response.aread()
                return
            pieces = []
            async for event, data in sse_lines(response):
                text, error = protocol.piece(event, data)
                if text:
                    turn.ttft = turn.ttft if turn.ttft is not None else time.perf_counter() - sent
                    pieces.append(text)
                turn.error = turn.error or error
            turn.reply = "".join(pieces)
            turn.total = time.perf_counter() - sent
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        turn.error = type(exc).__name__


async def user(protocol: Any, http: httpx.AsyncClient, number: int, start_at: float, deadline: float,
               think: float, turns: list[Turn], conversations: dict[str, list[str]]) -> None:
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    try:
        cid = await protocol.create(http)
    except httpx.HTTPError as exc:
        turns.append(Turn(number, "", "", error=f"create: {type(exc).__name__}"))
        return
    conversations[cid] = []
    count = 0
    while time.monotonic() < deadline:
        turn = Turn(number, cid, f"u{number}-t{count}-{uuid.uuid4().hex[:8]}")
        count += 1
        conversations[cid].append(turn.question)
        await one_turn(protocol, http, turn)
        turns.append(turn)
        await asyncio.sleep(think)


async def drive(protocol: Any, base_url: str, users: int, seconds: float, think: float,
                ramp: float) -> tuple[list[Turn], dict[str, list[str]], float]:
    """Runs the users (started evenly over `ramp` s); no turn starts after `seconds`.
    Returns the turns, each conversation's questions in order, and the wall time."""
    limits = httpx.Limits(max_connections=users + 20, max_keepalive_connections=users + 20)
    turns: list[Turn] = []
    conversations: dict[str, list[str]] = {}
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=httpx.Timeout(120.0)) as http:
        began = time.monotonic()
        deadline = began + seconds
        await asyncio.gather(*(user(protocol, http, n, began + ramp * n / users, deadline, think, turns,
                                    conversations) for n in range(users)))
        return turns, conversations, time.monotonic() - began


async def saved(protocol: Any, base_url: str, conversations: dict[str, list[str]]) -> dict[str, list[dict]]:
    """Each conversation's saved messages, read back after the load (a few at a time)."""
    gate = asyncio.Semaphore(20)
    found: dict[str, list[dict]] = {}
    async with httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(60.0)) as http:
        async def read(cid: str) -> None:
            async with gate:
                found[cid] = await protocol.history(http, cid)
        await asyncio.gather(*(read(cid) for cid in conversations))
    return found
