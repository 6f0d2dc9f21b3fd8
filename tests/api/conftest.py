"""Fixtures for the HTTP API tests: the real app under real uvicorn on a free loopback port, on a
SQLite file, answering with the fake OpenAI server; driven over HTTP with httpx."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from server.app import create_app
from tests.faults.conftest import restartable_pg, restartable_postgresql_proc, service_settings  # noqa: F401 - fixtures
from tests.support.fake_openai import FakeOpenAI
from tests.support.net import free_port


class ApiServer:
    def __init__(self, app: Any, port: int):
        self.app, self.port = app, port
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                    timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, name="api-uvicorn", daemon=True)

    @property
    def service(self):
        return self.app.state.service

    def start(self) -> "ApiServer":
        self.thread.start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("uvicorn did not answer /healthz")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def start_api(sqlite_url: str, llm_server: FakeOpenAI) -> Iterator[Callable[..., ApiServer]]:
    started: list[ApiServer] = []

    def start(keepalive: float = 15.0, database_url: str | None = None, **env: str) -> ApiServer:
        settings = service_settings(database_url or sqlite_url, llm_server.base_url, **env)
        api = ApiServer(create_app(settings, keepalive=keepalive), free_port()).start()
        started.append(api)
        return api

    yield start
    for api in started:
        api.stop()


@pytest.fixture
def api(start_api: Callable[..., ApiServer]) -> ApiServer:
    return start_api()


@pytest.fixture
def client(api: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, timeout=10) as http:
        yield http


def parse_sse(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """SSE parsed by hand: yields {"id", "event", "data"} per event and {"comment": text} per comment."""
    event: dict[str, Any] = {}
    for line in lines:
        if line == "":
            if event:
                if "data" in event:
                    event["data"] = json.loads(event["data"])
                yield event
            event = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "id":
                event["id"] = int(value)
            elif name in ("event", "data"):
                event[name] = value if name not in event else event[name] + "\n" + value


def stream_events(http: httpx.Client, method: str, url: str, **kwargs: Any) -> list[dict[str, Any]]:
    headers = {"Accept": "text/event-stream", **kwargs.pop("headers", {})}
    with http.stream(method, url, headers=headers, **kwargs) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return [e for e in parse_sse(response.iter_lines()) if "comment" not in e]
