"""Header helpers (DESIGN §3): W3C trace context and ``dingdee-*`` headers on every message."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

__all__ = [
    "FLOW",
    "SOURCE_ID",
    "Headers",
    "as_dict",
    "build",
    "extract_context",
    "get",
    "inject_context",
    "replace",
    "trace_headers",
]

Headers = list[tuple[str, bytes]]

FLOW = "dingdee-flow"
SOURCE_ID = "dingdee-source-id"
TRACE_HEADERS = ("traceparent", "tracestate", "baggage")


def get(headers: Iterable[tuple[str, bytes]] | None, name: str) -> str | None:
    """The last value of header ``name`` decoded as UTF-8, or ``None``."""
    found: str | None = None
    for key, value in headers or ():
        if key == name and value is not None:
            found = value.decode("utf-8", errors="replace")
    return found


def as_dict(headers: Iterable[tuple[str, bytes]] | None) -> dict[str, str]:
    return {k: v.decode("utf-8", errors="replace") for k, v in headers or () if v is not None}


def replace(headers: Sequence[tuple[str, bytes]] | None, updates: Mapping[str, str]) -> Headers:
    """Copy ``headers`` with ``updates`` set (existing values of those names dropped)."""
    kept = [(k, v) for k, v in headers or () if k not in updates]
    return kept + [(k, v.encode()) for k, v in updates.items()]


def _fresh_trace() -> Context:
    """A new root context (random W3C ids) for a message that would otherwise carry none.

    Without a recording tracer provider the current span is invalid and propagation writes no
    ``traceparent``; DESIGN §3 wants one on every message, so the approval starts its trace
    here. The sampled flag is set so that a later hop whose service does export spans records
    them (its parent-based sampler follows this flag) instead of dropping the whole trace.
    """
    ids = RandomIdGenerator()
    span = NonRecordingSpan(
        SpanContext(
            ids.generate_trace_id(),
            ids.generate_span_id(),
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
    )
    return trace.set_span_in_context(span, otel_context.Context())


def inject_context(headers: Headers, ctx: Context | None = None) -> Headers:
    """Write the current (or given) trace context into ``headers`` as W3C ``traceparent``.

    When that context holds no valid span (no tracer provider records spans, or nothing is
    being traced), a fresh root context is written instead (:func:`_fresh_trace`).
    """
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=ctx)
    if "traceparent" not in carrier:
        propagate.inject(carrier, context=_fresh_trace())
    return replace(headers, carrier)


def extract_context(headers: Iterable[tuple[str, bytes]] | None) -> Context:
    """The trace context carried by ``headers`` (an empty context when there is none)."""
    carrier = {k: v for k, v in as_dict(headers).items() if k in TRACE_HEADERS}
    return propagate.extract(carrier, context=otel_context.Context())


def trace_headers(headers: Iterable[tuple[str, bytes]] | None) -> Headers:
    """The W3C trace headers among ``headers``, as they are."""
    return [(k, v) for k, v in headers or () if k in TRACE_HEADERS and v is not None]


def build(
    flow: str, source_id: str, *, ctx: Context | None = None, carry: Headers | None = None
) -> Headers:
    """Headers for a new message: flow, source id and the trace context.

    The context is the current (or given) one, injected; or, with ``carry``, the trace headers of
    the record this one is made from, passed on unchanged (no span was made for it). Either way
    the message gets a valid ``traceparent``: a new trace when there is none to continue.
    """
    headers: Headers = [(FLOW, flow.encode()), (SOURCE_ID, source_id.encode())]
    if carry is not None and any(k == "traceparent" for k, _ in carry):
        return headers + carry
    return inject_context(headers, ctx)
