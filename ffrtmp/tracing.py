"""Optional OpenTelemetry tracing (extra `ffrtmp[tracing]`): one trace per job, across processes.

A client inside a span sends its W3C trace context with the submit; the master opens a `job` span under it
(or a new trace), a `queue` span until dispatch and an `attempt N` span per attempt, and sends the attempt's
context inside the JOB message; the worker's `run` span (the FFmpeg process, its exit status and metrics as
attributes) joins the same trace. Without the extra installed everything works and tracing is simply off.
"""

from __future__ import annotations

import logging
from typing import Any

from ffrtmp.errors import InvalidInput

log = logging.getLogger("ffrtmp.tracing")

try:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
    from opentelemetry.trace import Span, Status, StatusCode, set_span_in_context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    AVAILABLE = True
except ImportError:  # the extra is not installed
    AVAILABLE = False

DEFAULT_ENDPOINT = "http://localhost:4318/v1/traces"
"""OTLP/HTTP, as in the seed system (`localhost:4318`)."""


def endpoint_url(value: str) -> str:
    """`host:4318`, `http://host:4318` or a full URL → the OTLP/HTTP traces URL."""
    url = value if "://" in value else f"http://{value}"
    scheme, _, rest = url.partition("://")
    return url if "/" in rest else f"{scheme}://{rest}/v1/traces"


def nanos(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


class Tracing:
    """A tracer with its own provider (no global state), exporting over OTLP/HTTP or to a given exporter."""

    def __init__(self, service: str, endpoint: str | None = None, exporter: Any = None) -> None:
        if not AVAILABLE:
            raise InvalidInput("tracing", "needs OpenTelemetry: pip install opentelemetry-sdk "
                               "opentelemetry-exporter-otlp-proto-http (the extra `tracing` of ffrtmp)")
        self.provider = TracerProvider(resource=Resource.create({"service.name": service}))
        if exporter is not None:
            self.provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            otlp: SpanExporter = OTLPSpanExporter(endpoint=endpoint_url(endpoint or DEFAULT_ENDPOINT))
            self.provider.add_span_processor(BatchSpanProcessor(otlp))
        self.tracer = self.provider.get_tracer("ffrtmp")
        self.propagator = TraceContextTextMapPropagator()

    def start(self, name: str, *, parent: Span | None = None, carrier: dict[str, str] | None = None,
              at: float | None = None, attributes: dict[str, Any] | None = None) -> Span:
        """A span under `parent` (a local span) or `carrier` (a remote W3C context), or a new trace."""
        if parent is not None:
            context = set_span_in_context(parent)
        elif carrier:
            context = self.propagator.extract(carrier)
        else:
            context = None
        return self.tracer.start_span(name, context=context, start_time=nanos(at) if at else None,
                                      attributes=_attributes(attributes or {}))

    def carrier(self, span: Span) -> dict[str, str]:
        """The W3C trace context of `span`, to send inside a message."""
        carrier: dict[str, str] = {}
        self.propagator.inject(carrier, context=set_span_in_context(span))
        return carrier

    @staticmethod
    def end(span: Span, at: float | None = None, error: str | None = None,
            attributes: dict[str, Any] | None = None) -> None:
        if attributes:
            span.set_attributes(_attributes(attributes))
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error[:500]))
        span.end(end_time=nanos(at) if at else None)

    def shutdown(self) -> None:
        self.provider.shutdown()


def _attributes(values: dict[str, Any]) -> dict[str, Any]:
    """Only what OpenTelemetry accepts as attribute values."""
    return {key: value for key, value in values.items()
            if isinstance(value, str | bool | int | float) and value is not None}


def client_carrier() -> dict[str, str] | None:
    """The caller's current trace context, when the application traces with OpenTelemetry; else None."""
    if not AVAILABLE:
        return None
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier or None
