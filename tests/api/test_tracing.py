"""Tracing (core/tracing.py): spans for each HTTP request and each Burr step, exported to an
in-memory exporter, and no message text or secret in any of them unless content capture is on."""
from __future__ import annotations

import inspect
from collections.abc import Iterator

import httpx
import pytest
from burr.core import ApplicationBuilder
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import core.app
from core import tracing
from core.app import TURN, build_graph
from core.llm import OfflineModel
from server.app import create_app
from tests.api.conftest import ApiServer
from tests.api.test_streaming import new, wait_saved
from tests.faults.conftest import SECRET_KEY, service_settings
from tests.support.net import free_port

MARKER = "purple-elephant-7f3a"  # the message text no span may carry
HOOK_WIRED = "burr_hooks" in inspect.getsource(core.app)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    tracing.configure(environ={})  # off again for the tests after this one


@pytest.fixture
def traced_api(spans, sqlite_url, llm_server) -> Iterator[ApiServer]:
    provider = tracing.configure(environ={}, exporters=[spans])
    settings = service_settings(sqlite_url, llm_server.base_url)
    api = ApiServer(create_app(settings, tracer_provider=provider), free_port()).start()
    yield api
    api.stop()


def everything_in(span) -> str:
    """All a span would send: name, attributes, events, links' attributes, status text."""
    parts = [span.name, str(dict(span.attributes or {})), str(span.status.description or "")]
    parts += [f"{e.name} {dict(e.attributes or {})}" for e in span.events]
    parts += [str(dict(link.attributes or {})) for link in span.links]
    return " ".join(parts)


def assert_no_content(exported) -> None:
    for span in exported:
        text = everything_in(span)
        assert MARKER not in text and SECRET_KEY not in text, f"span {span.name!r} carries content: {text[:500]}"


def chat_with_marker(http: httpx.Client) -> str:
    cid = new(http)
    assert http.post(f"/api/v1/conversations/{cid}/messages", json={"content": f"hello {MARKER}"}).status_code == 200
    with http.stream("POST", f"/api/v1/conversations/{cid}/messages", json={"content": f"again {MARKER}"},
                     headers={"Accept": "text/event-stream"}) as response:
        response.read()
    wait_saved(http, cid, 4)
    assert http.get("/api/v1/conversations", params={"q": MARKER}).status_code == 200
    return cid


def test_each_request_is_a_span_without_message_text(traced_api, spans):
    with httpx.Client(base_url=traced_api.url, timeout=10) as http:
        chat_with_marker(http)
    exported = spans.get_finished_spans()
    server = [s for s in exported if s.kind is SpanKind.SERVER]
    routes = [s.attributes.get("http.route") for s in server]
    assert routes.count("/api/v1/conversations/{conversation_id}/messages") >= 3  # two sends, the reads
    assert "/api/v1/conversations" in routes
    statuses = {s.attributes.get("http.response.status_code") for s in server}
    assert 200 in statuses and 201 in statuses
    searched = next(s for s in server if "q=" in str(s.attributes.get("url.query", "")))
    assert searched.attributes["url.query"] == "q=REDACTED"
    assert_no_content(exported)


def test_content_capture_keeps_the_search_text(spans, sqlite_url, llm_server):
    provider = tracing.configure(environ={tracing.CAPTURE_CONTENT: "true"}, exporters=[spans])
    api = ApiServer(create_app(service_settings(sqlite_url, llm_server.base_url), tracer_provider=provider),
                    free_port()).start()
    try:
        httpx.get(f"{api.url}/api/v1/conversations", params={"q": MARKER}, timeout=10)
    finally:
        api.stop()
    queries = [s.attributes.get("url.query") for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert f"q={MARKER}" in queries


def test_each_burr_step_is_a_span_without_message_text(spans):
    tracing.configure(environ={}, exporters=[spans])
    app = (ApplicationBuilder().with_graph(build_graph(OfflineModel())).with_entrypoint(TURN.entrypoint)
           .with_state(chat_history=[]).with_identifiers(app_id="branch-1", partition_key="conv-1")
           .with_hooks(*tracing.burr_hooks()).build())
    _action, container = app.stream_result(halt_after=list(TURN.reply_actions), inputs={"prompt": f"hi {MARKER}"})
    assert MARKER in "".join(piece.get("delta", "") for piece in container)  # the text went through the steps
    exported = spans.get_finished_spans()
    steps = {s.name: s for s in exported if "burr.action" in (s.attributes or {})}
    assert {"human_input", "safety_check", "ai_response"} <= set(steps)
    assert steps["ai_response"].attributes["burr.partition_key"] == "conv-1"
    assert steps["ai_response"].attributes["burr.app_id"] == "branch-1"
    parents = {s.parent.span_id for s in steps.values() if s.parent is not None}
    assert parents and parents <= {s.context.span_id for s in exported}  # inside the execute call's span
    assert_no_content(exported)


def test_a_message_sent_through_the_api_traces_its_burr_steps(traced_api, spans):
    with httpx.Client(base_url=traced_api.url, timeout=10) as http:
        chat_with_marker(http)
    exported = spans.get_finished_spans()
    steps = [s.name for s in exported if "burr.action" in (s.attributes or {})]
    if not steps and not HOOK_WIRED:
        pytest.xfail("core/app.py does not add core.tracing.burr_hooks() to the application yet")
    assert steps.count("ai_response") == 2 and steps.count("human_input") == 2
    assert_no_content(exported)


@pytest.mark.parametrize("environ, on", [
    ({}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
    ({"OTEL_TRACES_EXPORTER": "console"}, True),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, False),
    ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}, False),
])
def test_switched_on_by_the_standard_variables(environ, on, spans):
    provider = tracing.configure(environ=environ)
    assert (provider is not None) is on and bool(tracing.burr_hooks()) is on
    if provider is not None:
        provider.shutdown()


def test_an_unknown_exporter_is_refused_by_name(spans):
    with pytest.raises(ValueError, match="OTEL_TRACES_EXPORTER"):
        tracing.configure(environ={"OTEL_TRACES_EXPORTER": "zipkin-typo"})
