"""Runs: re-attach to a run's events (SSE, honouring Last-Event-ID) and stop it."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from core.chat import ChatService
from server.deps import get_service
from server.errors import ApiProblem
from server.schemas import SSE, StopAccepted, problems
from server.sse import last_event_id, stream_response

router = APIRouter(prefix="/api/v1/runs", tags=["runs"])


def _run(service: ChatService, run_id: str):
    run = service.attach(run_id)
    if run is None:
        raise ApiProblem(404, f"No run {run_id!r:.60} (unknown, or finished long ago).")
    return run


@router.get("/{run_id}/events", response_class=StreamingResponse,
            responses={200: {"description": "The run's events", "content": SSE}, **problems(404, 422)})
def run_events(run_id: str, request: Request, after: int | None = Query(None, ge=-1),
               service: ChatService = Depends(get_service)):
    """The events after Last-Event-ID (or `after`), then the live tail, ending with `done`."""
    run = _run(service, run_id)
    return stream_response(run, last_event_id(request, after), request.app.state.keepalive)


@router.post("/{run_id}/stop", status_code=202, response_model=StopAccepted, responses=problems(404, 409))
def stop_run(run_id: str, service: ChatService = Depends(get_service)):
    run = _run(service, run_id)
    if not service.stop(run_id):
        raise ApiProblem(409, "This run has already finished.", run_id=run.id, outcome=run.outcome)
    return {"run_id": run.id, "stopping": True}
