"""OpenTelemetry set-up and W3C trace-context propagation through Kafka headers.

One onboarding is one trace: the operator's command starts it, its context travels in the
``traceparent`` header of every event, and each worker continues it when it consumes.
When no OTLP endpoint is configured spans go to a local JSON-lines file, which
``tenancy trace`` (and the tests) read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

_provider: TracerProvider | None = None
_users = 0  # callers of configure_tracing that have not shut it down yet


class JsonLinesSpanExporter(SpanExporter):
    """Appends one JSON object per span; O_APPEND keeps lines whole across processes."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Opened once: a span is one write, not an open, a write and a close.
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._fd is None:
            return SpanExportResult.FAILURE
        lines = "".join(json.dumps(_span_record(span)) + "\n" for span in spans)
        os.write(self._fd, lines.encode())
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _span_record(span: ReadableSpan) -> dict[str, Any]:
    ctx = span.get_span_context()
    parent = span.parent
    return {
        "trace_id": format(ctx.trace_id, "032x") if ctx else None,
        "span_id": format(ctx.span_id, "016x") if ctx else None,
        "parent_id": format(parent.span_id, "016x") if parent else None,
        "name": span.name,
        "kind": span.kind.name,
        "service": span.resource.attributes.get("service.name"),
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
    }


def configure_tracing(service: str, otlp_endpoint: str | None, spans_file: Path) -> TracerProvider:
    """The process's tracer provider, made by the first caller. Each caller is a user until it
    calls :func:`shutdown_tracing`."""
    global _provider, _users
    _users += 1
    if _provider is not None:
        return _provider
    provider = TracerProvider(resource=Resource.create({"service.name": f"tenancy-{service}"}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint.rstrip("/") + "/v1/traces"))
        )
    else:
        # Simple (synchronous) so a worker killed with SIGKILL has still written its spans.
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(spans_file)))
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def shutdown_tracing() -> None:
    """One user is done; the last one flushes and closes the provider. Several workers in one
    process (the tests run a few sets) share it, and OpenTelemetry lets a process set its
    provider only once: closed by the first to stop, the others' spans would be lost."""
    global _provider, _users
    _users = max(0, _users - 1)
    if _users == 0 and _provider is not None:
        _provider.shutdown()
        _provider = None


def tracer() -> trace.Tracer:
    # The process's provider, not OpenTelemetry's global one, which can be set only once: a
    # provider made after an earlier one was shut down (the tests start and stop sets of
    # workers) is the one that records.
    if _provider is not None:
        return _provider.get_tracer("tenancy")
    return trace.get_tracer("tenancy")


def current_headers() -> dict[str, str]:
    """The current trace context as Kafka headers (``traceparent``, ``tracestate``)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


@contextmanager
def continued_from(headers: Mapping[str, str]) -> Iterator[None]:
    token = context.attach(propagate.extract(dict(headers)))
    try:
        yield
    finally:
        context.detach(token)
