"""OpenTelemetry tracing, switched on by the standard `OTEL_*` environment variables.

Off unless `OTEL_TRACES_EXPORTER` (`otlp`, `console`), `OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (and `OTEL_SDK_DISABLED` is not `true`); then
`configure()` builds one tracer provider, the HTTP API traces each request with it, and
`burr_hooks()` gives the Burr lifecycle hook that traces each step of a turn.

Span attributes carry ids, routes, action names and statuses, never message text: Burr's logged
attributes are dropped and the search text in `url.query` is redacted, unless
`BURROW_OTEL_CAPTURE_CONTENT=true` allows content. Secrets are never added by Burrow either way.
The packages are optional (the `otel` extra); they are imported only when tracing is on.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import types
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

CAPTURE_CONTENT = "BURROW_OTEL_CAPTURE_CONTENT"
CONTENT_QUERY_PARAMETERS = frozenset({"q"})  # the search text of GET /api/v1/conversations
REDACTED = "REDACTED"
TRUE = frozenset({"1", "true", "yes", "on"})


@dataclasses.dataclass(frozen=True)
class Tracing:
    provider: Any  # opentelemetry.sdk.trace.TracerProvider
    capture_content: bool


_current: Tracing | None = None


def wanted(environ: Mapping[str, str]) -> bool:
    """Whether the OTEL_* variables ask for traces (the SDK's own rules, read the same way)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters == "none":
        return False
    return bool(exporters or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def configure(environ: Mapping[str, str] | None = None, *, exporters: Sequence[Any] = ()) -> Any | None:
    """The process's tracer provider, or None when tracing is off. `exporters` (tests: an in-memory
    one) are added as well, exporting each span as it ends; those of OTEL_TRACES_EXPORTER in batches."""
    global _current
    environ = os.environ if environ is None else environ
    if not exporters and not wanted(environ):
        _current = None
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    capture = environ.get(CAPTURE_CONTENT, "").strip().lower() in TRUE
    provider = TracerProvider(resource=Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME", "burrow")}))
    provider.add_span_processor(_classes().ContentFilter(capture))  # first: it edits spans before any export
    for exporter in exporters:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    if wanted(environ):
        for exporter in _exporters_from(environ):
            provider.add_span_processor(BatchSpanProcessor(exporter))
    _current = Tracing(provider, capture)
    return provider


def _exporters_from(environ: Mapping[str, str]) -> list[Any]:
    names = [n.strip() for n in (environ.get("OTEL_TRACES_EXPORTER") or "otlp").lower().split(",") if n.strip()]
    found = []
    for name in names:
        if name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter
            found.append(ConsoleSpanExporter())
        elif name == "otlp":
            found.append(_otlp_exporter(environ))
        else:
            raise ValueError(f"OTEL_TRACES_EXPORTER: {name!r} is not supported here; use otlp, console or none.")
    return found


def _otlp_exporter(environ: Mapping[str, str]) -> Any:
    """OTLP over HTTP (the SDK's default protocol), or gRPC when the protocol variables say so."""
    protocol = (environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf").strip().lower()
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        package = "opentelemetry-exporter-otlp-proto-" + ("grpc" if protocol == "grpc" else "http")
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: install {package} "
                         "(pip install 'burrow-chat[otel]' has the HTTP one).") from exc
    return OTLPSpanExporter()  # endpoint, headers and timeout: its own OTEL_EXPORTER_OTLP_* variables


def current() -> Tracing | None:
    return _current


def redact_query(query: str, capture_content: bool = False) -> str:
    """A URL query with the values that are user content replaced (the parameter names stay)."""
    if capture_content:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(key, REDACTED if key in CONTENT_QUERY_PARAMETERS else value) for key, value in pairs])


def burr_hooks() -> list[Any]:
    """The lifecycle hooks to add to a Burr application (`builder.with_hooks(*burr_hooks())`):
    one span per step and per execute call while tracing is on; none otherwise."""
    tracing = _current
    if tracing is None:
        return []
    return [_classes().StepSpans(tracing.provider.get_tracer("burrow.burr"), tracing.capture_content)]


@functools.cache
def _classes() -> Any:
    """The classes built on the optional packages, defined on first use (tracing may be off, and the
    packages missing, in a process that imports this module)."""
    from burr.integrations.opentelemetry import OpenTelemetryBridge
    from opentelemetry import trace
    from opentelemetry.sdk.trace import SpanProcessor

    class ContentFilter(SpanProcessor):
        """Takes user content out of attributes other libraries set at a span's start (FastAPI puts
        the query string, with the search text, in `url.query`)."""

        def __init__(self, capture_content: bool):
            self.capture_content = capture_content

        def on_start(self, span: Any, parent_context: Any = None) -> None:
            query = (span.attributes or {}).get("url.query")
            if isinstance(query, str) and query:
                span.set_attribute("url.query", redact_query(query, self.capture_content))

    class StepSpans(OpenTelemetryBridge):
        """Burr's bridge to OpenTelemetry, with the step's ids on its span; the attributes an action
        logs (which may hold state, so message text) only when content capture is on."""

        def __init__(self, tracer: Any, capture_content: bool):
            super().__init__(tracer=tracer)
            self.capture_content = capture_content

        def pre_run_step(self, *, action: Any, **kwargs: Any) -> None:
            super().pre_run_step(action=action, **kwargs)
            ids = {"burr.action": action.name, "burr.app_id": kwargs.get("app_id"),
                   "burr.partition_key": kwargs.get("partition_key"), "burr.sequence_id": kwargs.get("sequence_id")}
            trace.get_current_span().set_attributes({k: v for k, v in ids.items() if v is not None})

        def do_log_attributes(self, *, attributes: dict[str, Any], **kwargs: Any) -> None:
            if self.capture_content:
                super().do_log_attributes(attributes=attributes, **kwargs)

    return types.SimpleNamespace(ContentFilter=ContentFilter, StepSpans=StepSpans)
