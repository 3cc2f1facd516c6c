"""Header helpers (DESIGN §3): W3C trace context and ``dingdee-*`` headers on every message."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.context import Context

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


def inject_context(headers: Headers, ctx: Context | None = None) -> Headers:
    """Write the current (or given) trace context into ``headers`` as W3C ``traceparent``."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=ctx)
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
    the record this one is made from, passed on unchanged (no span was made for it).
    """
    headers: Headers = [(FLOW, flow.encode()), (SOURCE_ID, source_id.encode())]
    if carry is not None:
        return headers + carry
    return inject_context(headers, ctx)
