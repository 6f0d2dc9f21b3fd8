"""`create_app()`: the FastAPI app over one ChatService (built at startup, closed at shutdown)."""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from core.chat import ChatService
from core.logs import configure_logging
from core.settings import Settings
from server import errors
from server.routes import conversations, health, openai, runs

KEEPALIVE = 15.0  # seconds of silence before an SSE stream sends a `: keep-alive` comment


def create_app(settings: Settings | None = None, *, keepalive: float = KEEPALIVE) -> FastAPI:
    """The API; its lifespan builds `ChatService.from_settings(settings or Settings.load())` and closes it."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loaded = settings or Settings.load()
        configure_logging(loaded)
        service = ChatService.from_settings(loaded)
        app.state.service = service
        try:
            yield
        finally:
            service.close()

    app = FastAPI(title="Burrow API", version="1", lifespan=lifespan)
    app.state.keepalive = keepalive
    app.state.pending = {}
    errors.install(app)
    app.include_router(health.router)
    app.include_router(conversations.router)
    app.include_router(runs.router)
    app.include_router(openai.router)
    return app
