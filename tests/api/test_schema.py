"""Schemathesis against the live `/openapi.json`: generated requests, valid and invalid, to every
operation on real uvicorn. No answer may be a 5xx (unless the test breaks the model or the database
on purpose) and every answer must match the schema: its status, content type, headers and body."""
from __future__ import annotations

from collections.abc import Iterable

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance

EXAMPLES = 12  # per operation and mode: the whole API in a few seconds
SENDING = ("POST /api/v1/conversations/{conversation_id}/messages",
           "POST /api/v1/conversations/{conversation_id}/retry", "POST /v1/chat/completions")
# Rules JSON Schema cannot state, so a schema-valid request may still be a 422; only that check is
# relaxed, and only there: "the last user message has text", and which message an index may name
# (a message of yours to edit, a reply to regenerate or rate), which depends on the conversation;
# and an import's body, which must be one of the file formats docs/export-format.md describes.
UNSTATED_RULES = {label: [positive_data_acceptance] for label in (
    "POST /v1/chat/completions", "POST /api/v1/import",
    "POST /api/v1/conversations/{conversation_id}/messages/{index}/edit",
    "POST /api/v1/conversations/{conversation_id}/messages/{index}/regenerate",
    "PUT /api/v1/conversations/{conversation_id}/messages/{index}/feedback")}


def server_errors_but(allowed: Iterable[int]):
    """A check like Schemathesis' own "not a server error", except for statuses the test causes."""
    allowed = frozenset(allowed)

    def check(ctx, response, case) -> None:
        assert response.status_code < 500 or response.status_code in allowed, \
            f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
    return check


def fuzz(base_url: str, only: Iterable[str] | None = None, allowed_5xx: Iterable[int] = (),
         examples: int = EXAMPLES, conversation: str | None = None) -> list[str]:
    """Runs every (or each named) operation in both modes; returns the failures found, as text.
    `conversation`: an existing id every generated request uses (else ids are generated, mostly unknown)."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    session, failures, seen = requests.Session(), [], set()
    for result in schema.get_all_operations():
        operation = result.ok()
        if only is not None and operation.label not in only:
            continue
        seen.add(operation.label)
        excluded = [not_a_server_error, *UNSTATED_RULES.get(operation.label, [])]
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=operation.as_strategy(mode))
            @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                      phases=[Phase.generate], suppress_health_check=list(HealthCheck))
            def run(case) -> None:
                if conversation and "conversation_id" in (case.path_parameters or {}):
                    case.path_parameters["conversation_id"] = conversation
                case.call_and_validate(session=session, excluded_checks=excluded,
                                       additional_checks=[server_errors_but(allowed_5xx)])
            try:
                run()
            except Unsatisfiable:
                pass  # nothing invalid to send (an operation without parameters, or only free strings)
            except (Exception, BaseExceptionGroup) as failure:  # noqa: BLE001 - collected, reported at once
                failures.append(f"{operation.label} ({mode.value}):\n{failure}")
    assert only is None or seen == set(only), f"operations not in the schema: {set(only) - seen}"
    return failures


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


def test_every_generated_request_gets_a_documented_answer(start_api, database_url):
    api = start_api(database_url=database_url)
    failures = fuzz(api.url)
    assert not failures, "\n\n".join(failures)


def test_with_the_model_down_sending_is_502_and_still_as_documented(api, llm_server):
    cid = requests.post(f"{api.url}/api/v1/conversations", json={}, timeout=10).json()["id"]
    llm_server.fail_next(500, times=10_000)
    failures = fuzz(api.url, only=SENDING, allowed_5xx={502}, conversation=cid)
    assert not failures, "\n\n".join(failures)
    assert llm_server.requests, "no generated request reached the model: the test proved nothing"


def test_with_the_database_down_every_answer_is_503_and_as_documented(start_api, restartable_pg):
    server, url = restartable_pg
    api = start_api(database_url=url)
    server.stop()
    failures = fuzz(api.url, allowed_5xx={503}, examples=5)
    assert not failures, "\n\n".join(failures)
