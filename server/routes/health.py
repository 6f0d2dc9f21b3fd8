"""Liveness and readiness."""
from __future__ import annotations

from fastapi import APIRouter, Depends

from core.chat import ChatService
from core.errors import StorageError
from server.deps import base_service
from server.errors import STORAGE_RETRY_AFTER, problem
from server.schemas import Health, problems

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=Health, responses=problems())
def readyz(service: ChatService = Depends(base_service)):
    try:
        service.ping()
    except StorageError as exc:
        return problem(503, f"The database is not reachable: {exc}", {"Retry-After": STORAGE_RETRY_AFTER})
    return {"status": "ready"}
