"""Every ``approvals.raw`` record carries a valid W3C ``traceparent`` (DESIGN §3)."""

from __future__ import annotations

import pytest
from opentelemetry import trace

from dingdee_common.kafka import headers as hdr
from dingdee_common.observability import tracing
from dingdee_extractor.emitter import Emitter
from tests.kafka_fakes import FakeProducer


async def test_a_snapshot_starts_a_trace_when_no_span_is_recorded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # no tracer provider: the publish span is a no-op and carries no context of its own
    monkeypatch.setattr(tracing, "_tracer", trace.NoOpTracer())
    producer = FakeProducer()
    emitter = Emitter(producer, "approvals.raw")
    for instance_id in ("pi-1", "pi-2"):
        await emitter.emit(
            flow="petty-cash",
            process_code="PROC-1",
            instance_id=instance_id,
            instance={"status": "COMPLETED", "result": "agree"},
            fingerprint="fp",
            trigger="poll",
        )
    await emitter.flush()
    contexts = []
    for sent in producer.sent:
        ctx = trace.get_current_span(hdr.extract_context(sent.headers)).get_span_context()
        assert ctx.is_valid and ctx.trace_flags.sampled, hdr.as_dict(sent.headers)
        contexts.append(ctx.trace_id)
    assert contexts[0] != contexts[1], "each approval gets its own trace"
