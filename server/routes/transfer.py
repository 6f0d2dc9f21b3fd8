"""Export and import under /api/v1: a conversation as Burrow JSON, Markdown or OpenAI messages, every
conversation as a .zip (written to a temporary file, sent, then removed), and
import of any file `burrow import` reads (the request body is the file; it is spooled to disk past
a few megabytes, then read as a stream, never whole)."""
from __future__ import annotations

import os
import tempfile
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from core.chat import ChatService
from server.deps import conversation_id, get_service
from server.errors import ApiProblem
from server.schemas import problems

router = APIRouter(prefix="/api/v1", tags=["transfer"])
MEDIA = {"json": "application/json", "markdown": "text/markdown; charset=utf-8", "openai": "application/json"}
SUFFIX = {"json": ".json", "markdown": ".md", "openai": ".openai.json"}
SPOOL_BYTES = 8 * 2**20
MAX_IMPORT_BYTES = 2 * 2**30


@router.get("/conversations/{conversation_id}/export", responses=problems(404, 422, 503),
            response_class=Response, summary="Export a conversation")
def export(cid: str = Depends(conversation_id), service: ChatService = Depends(get_service),
           format: Literal["json", "markdown", "openai"] = Query("json", description="json: every branch "  # noqa: A002
                                                                 "(docs/export-format.md); markdown, openai: one branch"),
           branch: str | None = Query(None, max_length=255, description="for markdown and openai (default: latest)")
           ) -> Response:
    if service.conversation(cid) is None:
        raise ApiProblem(404, f"No conversation {cid!r:.60}.")
    body = service.export_text(cid, format, branch)
    disposition = f'attachment; filename="{cid}{SUFFIX[format]}"'
    return Response(body, media_type=MEDIA[format], headers={"Content-Disposition": disposition})


@router.get("/export", responses=problems(), response_class=FileResponse, summary="Export every conversation",
            description="A .zip of Burrow JSON files, one per conversation (what `burrow export --all` writes).")
async def export_all(service: ChatService = Depends(get_service)) -> FileResponse:
    handle, path = tempfile.mkstemp(prefix="burrow-export-", suffix=".zip")
    os.close(handle)
    try:
        await run_in_threadpool(service.export_archive, path)
    except BaseException:
        os.unlink(path)
        raise
    return FileResponse(path, media_type="application/zip", filename="burrow-conversations.zip",
                        background=BackgroundTask(os.unlink, path))


@router.post("/import", status_code=201, responses=problems(413, 422, 503), summary="Import a file",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": {}}, "application/zip": {"schema": {"type": "string", "format": "binary"}}}}})
async def import_file(request: Request, service: ChatService = Depends(get_service),
                      name: str = Query("upload", max_length=255, description="the file's name, for error messages")
                      ) -> dict[str, list[str]]:
    """Burrow JSON, a .zip of them, an OpenAI messages list or ChatGPT's conversations.json; a bad
    file imports nothing (422 naming the problem). Answers the new conversation ids."""
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_IMPORT_BYTES:
                raise ApiProblem(413, f"The file is larger than {MAX_IMPORT_BYTES // 2**30} GB.")
            spool.write(chunk)
        spool.seek(0)
        ids = await run_in_threadpool(service.import_file, spool, name)
    return {"conversations": ids}
