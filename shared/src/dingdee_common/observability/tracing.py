"""OpenTelemetry bootstrap and the messaging spans around Kafka hops (DESIGN §8, STYLE §7)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from dingdee_common.kafka import headers as hdr

__all__ = [
    "batch_links",
    "configure_tracing",
    "consume_span",
    "publish_span",
    "record_error",
    "recording",
    "shutdown_tracing",
    "tracer",
]

_provider: TracerProvider | None = None


def configure_tracing(
    service: str, *, enabled: bool = True, extra_processors: Sequence[SpanProcessor] = ()
) -> TracerProvider | None:
    """Install the SDK tracer provider once, when its spans have somewhere to go.

    Spans are recorded and exported over OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set; tests pass an in-memory exporter through
    ``extra_processors``. With neither, no provider is installed: recording spans that nobody
    receives cost the transformer a fifth of its time per record, and the trace context still
    flows from each consumed record's headers into the records produced from it (OpenTelemetry's
    non-recording spans carry their parent's context).
    """
    global _provider  # noqa: PLW0603 - the OTel global provider can be set exactly once
    exporting = bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
    if not enabled or (_provider is None and not exporting and not extra_processors):
        return None
    if _provider is None:
        name = os.environ.get("OTEL_SERVICE_NAME", f"dingdee-{service}")
        _provider = TracerProvider(resource=Resource.create({"service.name": name}))
        if exporting:
            # only when exporting: the exporter pulls in protobuf and requests, which a service
            # that does not export never needs to load
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
                OTLPSpanExporter,
            )

            _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(_provider)
    for processor in extra_processors:
        _provider.add_span_processor(processor)
    return _provider


def recording() -> bool:
    """Whether spans are recorded: :func:`configure_tracing` installed the SDK provider.

    When not, a hop makes no span at all and passes its record's trace headers on unchanged
    (:func:`dingdee_common.kafka.headers.trace_headers`): the same context a non-recording span
    would carry, without paying for the span.
    """
    return _provider is not None


def shutdown_tracing() -> None:
    if _provider is not None:
        _provider.shutdown()


_tracer: trace.Tracer | None = None


def tracer() -> trace.Tracer:
    """The ``dingdee`` tracer, looked up once (a proxy until a provider is set, then delegating)."""
    global _tracer  # noqa: PLW0603 - one process-wide tracer, like the OTel provider itself
    if _tracer is None:
        _tracer = trace.get_tracer("dingdee")
    return _tracer


def _attributes(topic: str, operation: str, **extra: str | int) -> dict[str, str | int]:
    attrs: dict[str, str | int] = {
        "messaging.system": "kafka",
        "messaging.destination.name": topic,
        "messaging.operation.type": operation,
    }
    attrs.update(extra)
    return attrs


@contextmanager
def publish_span(topic: str, key: str | None = None) -> Iterator[Span]:
    """A PRODUCER span ``"<topic> publish"``; inject its context into the outgoing headers."""
    extra: dict[str, str | int] = {"messaging.kafka.message.key": key} if key else {}
    with tracer().start_as_current_span(
        f"{topic} publish",
        kind=SpanKind.PRODUCER,
        attributes=_attributes(topic, "publish", **extra),
    ) as span:
        yield span


@contextmanager
def consume_span(
    topic: str,
    headers: Sequence[tuple[str, bytes]] | None,
    *,
    partition: int,
    offset: int,
    group: str,
) -> Iterator[Span]:
    """A CONSUMER span ``"<topic> process"`` as the child of the context in ``headers``."""
    parent = hdr.extract_context(headers)
    with tracer().start_as_current_span(
        f"{topic} process",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={
            **_attributes(topic, "process"),
            "messaging.destination.partition.id": str(partition),
            "messaging.kafka.offset": offset,
            "messaging.consumer.group.name": group,
        },
    ) as span:
        yield span


def batch_links(records_headers: Sequence[Sequence[tuple[str, bytes]] | None]) -> list[Link]:
    """Links to each record's context, for a span that handles a batch."""
    links: list[Link] = []
    for headers in records_headers:
        ctx = trace.get_current_span(hdr.extract_context(headers)).get_span_context()
        if ctx.is_valid:
            links.append(Link(ctx))
    return links


def record_error(span: Span, exc: BaseException, error_type: str) -> None:
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, str(exc)[:200]))
    span.set_attribute("error.type", error_type)
