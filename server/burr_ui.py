"""Burr's own tracking UI inside the API server, at /burr: one server shows the chat API and its runs.

Burr's UI reads every project in the tracker folder and knows nothing of Burrow's users, so it is
mounted only without sign-in (BURROW_AUTH=none, one person's data); with sign-in it is left out and
/burr answers 404 like any unknown route. Its backend is Burr's module-level local backend, pointed
at Burrow's tracker folder (BURROW_TRACKER_DIR, else Burr's default ~/.burr).
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from core.settings import Settings

log = logging.getLogger(__name__)
PATH = "/burr"


def mounted(settings: Settings) -> bool:
    """Whether this server shows Burr's UI: tracking on, and nobody's data to keep from anyone else."""
    return settings.tracking_enabled and settings.auth == "none"


def mount(app: FastAPI, settings: Settings) -> FastAPI | None:
    """Mounts Burr's UI at /burr when `mounted(settings)`; its app, or None."""
    if not mounted(settings):
        if settings.tracking_enabled:
            log.info("Burr's UI is not served at %s with sign-in on: it would show every user's runs", PATH)
        return None
    from burr.tracking.server import run  # imported only when used: it builds its backend on import

    if settings.tracker_dir:
        run.backend.path = settings.tracker_dir  # LocalBackend reads runs from here
    return run.mount_burr_ui(app, path=PATH)


@contextlib.asynccontextmanager
async def running(ui_app: FastAPI | None) -> AsyncIterator[None]:
    """Burr's UI's own startup and shutdown (a mounted app's lifespan is not run by Starlette)."""
    if ui_app is None:
        yield
        return
    from burr.tracking.server import run

    async with run.lifespan(ui_app):
        yield
