"""`create_app()`: the FastAPI app over one ChatService (built at startup, closed at shutdown)."""
from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from core import tracing
from core.chat import ChatService
from core.retention import start_pruning
from core.logs import configure_logging
from core.settings import Settings
from server import burr_ui, errors
from server.routes import branches, conversations, health, openai, retention, runs, search, transfer

log = logging.getLogger(__name__)
KEEPALIVE = 15.0  # seconds of silence before an SSE stream sends a `: keep-alive` comment


def create_app(settings: Settings | None = None, *, keepalive: float = KEEPALIVE,
               tracer_provider: Any | None = None) -> FastAPI:
    """The API; its lifespan builds `ChatService.from_settings(settings or Settings.load())` and closes it;
    Burr's UI is mounted at /burr when tracking is on and sign-in off (server/burr_ui.py).
    Requests are traced with `tracer_provider`, else with the one the OTEL_* variables ask for (core/tracing.py)."""
    provider = tracer_provider if tracer_provider is not None else tracing.configure()
    loaded = settings or Settings.load()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(loaded)
        service = ChatService.from_settings(loaded)
        app.state.service = service
        stop_pruning = start_pruning(service)  # BURROW_RETENTION_DAYS; nothing when it is unset
        try:
            async with burr_ui.running(app.state.burr_ui):
                yield
        finally:
            stop_pruning()
            service.close()
            if provider is not None and tracer_provider is None:
                provider.shutdown()  # sends the spans still queued

    app = FastAPI(title="Burrow API", version="1", lifespan=lifespan, **telemetry(provider))
    app.state.keepalive = keepalive
    app.state.pending = {}
    errors.install(app)
    document_body_errors(app)
    app.include_router(health.router)
    app.include_router(conversations.router)
    app.include_router(runs.router)
    app.include_router(branches.router)
    app.include_router(transfer.router)
    app.include_router(retention.router)
    app.include_router(search.router)
    app.include_router(openai.router)
    app.state.burr_ui = burr_ui.mount(app, loaded)
    return app


def telemetry(provider: Any | None) -> dict[str, Any]:
    """FastAPI's own request spans, on `provider` only: off without it (whatever the global provider),
    and without its metrics and logs (a validation failure's log would hold the request's input)."""
    if "telemetry" not in inspect.signature(FastAPI).parameters:
        if provider is not None:
            log.warning("Tracing is on, but this FastAPI cannot trace requests (it has no `telemetry` option)")
        return {}
    return {"telemetry": {"tracer_provider": provider, "tracing": provider is not None, "metrics": False,
                          "logs": False}}


def document_body_errors(app: FastAPI) -> None:
    """Every operation that takes a body can answer 400 (a body that is not JSON text at all), and every
    change to a conversation 403 (an admin's, on another user's): said once here, for every route."""
    from server.schemas import problems

    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            for path, operations in build()["paths"].items():
                for method, operation in operations.items():
                    if isinstance(operation, dict) and "requestBody" in operation:
                        operation["responses"].setdefault("400", problems(400)[400])
                    if isinstance(operation, dict) and "{conversation_id}" in path and method != "get":
                        operation["responses"].setdefault("403", problems(403)[403])  # an admin, read-only
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
