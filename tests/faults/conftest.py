"""Fixtures for the fault tests: ChatServices built from settings the way the app builds them.

Every service talks to the fake OpenAI server through the real `openai` client, with a key that
looks like a real one, so the tests can also check that it never leaks.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from core.chat import ChatService
from core.settings import Settings
from tests.support.fake_openai import FakeOpenAI

SECRET_KEY = "sk-test-SECRET-b7f3c9d2e1a04f5e8d6c"


def service_settings(db_url: str, base_url: str, **env: str) -> Settings:
    """Settings as the app reads them from the environment: no retries, a short timeout, no tracker."""
    environ = {
        "BURROW_DATABASE_URL": db_url,
        "OPENAI_BASE_URL": base_url,
        "OPENAI_API_KEY": SECRET_KEY,
        "BURROW_MAX_RETRIES": "0",
        "BURROW_REQUEST_TIMEOUT": "2",
        "BURROW_TRACKER_PROJECT": "off",
        **env,
    }
    return Settings.load(environ=environ, secrets={})


@pytest.fixture
def make_service(db_url: str, llm_server: FakeOpenAI) -> Iterator[Callable[..., ChatService]]:
    """Builds ChatServices on the test's database (each with its own engine, like separate servers)."""
    made: list[ChatService] = []

    def make(url: str | None = None, base_url: str | None = None, **env: str) -> ChatService:
        service = ChatService.from_settings(service_settings(url or db_url, base_url or llm_server.base_url, **env))
        made.append(service)
        return service

    yield make
    for service in made:
        service.persister.engine.dispose()


@pytest.fixture
def service(make_service: Callable[..., ChatService]) -> ChatService:
    return make_service()
