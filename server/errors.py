"""Every error the API returns is `application/problem+json` (RFC 9457): type, title, status, detail.

Facade errors map to statuses here, once: StorageError -> 503 (Retry-After), BusyError -> 429
(Retry-After), ReadOnlyError (an admin changing another's) -> 403, InputError -> 422; request validation
-> 422; routing errors keep their status.
"""
from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import BusyError, InputError, ReadOnlyError, StorageError

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"
STORAGE_RETRY_AFTER = "5"
BUSY_RETRY_AFTER = "1"
TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
          413: "Content Too Large", 422: "Unprocessable Content", 429: "Too Many Requests",
          500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


class ApiProblem(Exception):
    """Raised by routes: becomes a problem+json response with `status`, `detail` and any `extra` members."""

    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail)
        self.status, self.detail, self.headers, self.extra = status, detail, headers or {}, extra


def problem(status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def not_found(what: str) -> ApiProblem:
    return ApiProblem(404, f"No {what}.")


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiProblem)
    async def _api_problem(request: Request, exc: ApiProblem) -> JSONResponse:
        return problem(exc.status, exc.detail, exc.headers, **exc.extra)

    @app.exception_handler(StorageError)
    async def _storage(request: Request, exc: StorageError) -> JSONResponse:
        log.error("%s %s: the database failed: %s", request.method, request.url.path, exc, exc_info=exc)
        return problem(503, str(exc), {"Retry-After": STORAGE_RETRY_AFTER})

    @app.exception_handler(BusyError)
    async def _busy(request: Request, exc: BusyError) -> JSONResponse:
        wait = getattr(exc, "retry_after", None)  # a user's own limit (LimitError) says when
        return problem(429, str(exc), {"Retry-After": str(int(wait)) if wait else BUSY_RETRY_AFTER})

    @app.exception_handler(ReadOnlyError)
    async def _read_only(request: Request, exc: ReadOnlyError) -> JSONResponse:
        return problem(403, str(exc))

    @app.exception_handler(InputError)
    async def _input(request: Request, exc: InputError) -> JSONResponse:
        return problem(422, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()]
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors) or "Invalid request."
        return problem(422, detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), dict(exc.headers or {}))
