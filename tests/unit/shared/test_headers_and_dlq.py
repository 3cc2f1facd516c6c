"""Trace context and dingdee headers travel with every message; dead letters add §3 headers."""

from __future__ import annotations

from datetime import UTC, datetime

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from dingdee_common.errors import ErrorClass
from dingdee_common.kafka import headers as hdr
from dingdee_common.kafka.dlq import DLQ_HEADERS, SourceRecord, dead_letter_headers


class TestTraceHeaders:
    def test_inject_then_extract_keeps_the_trace(self) -> None:
        tracer = TracerProvider().get_tracer("test")
        with tracer.start_as_current_span("produce") as span:
            headers = hdr.build("petty-cash", "PID-1")
        ctx = hdr.extract_context(headers)
        carried = trace.get_current_span(ctx).get_span_context()
        assert carried.trace_id == span.get_span_context().trace_id
        assert hdr.get(headers, hdr.FLOW) == "petty-cash"
        assert hdr.get(headers, hdr.SOURCE_ID) == "PID-1"

    def test_no_context_gives_an_invalid_span(self) -> None:
        ctx = hdr.extract_context([("dingdee-flow", b"x")])
        assert not trace.get_current_span(ctx).get_span_context().is_valid

    def test_carried_trace_headers_pass_on_unchanged(self) -> None:
        incoming = [
            ("dingdee-flow", b"petty-cash"),
            ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            ("tracestate", b"dd=s:1"),
            ("baggage", b"tenant=acme"),
        ]
        carried = hdr.trace_headers(incoming)
        assert carried == incoming[1:]
        headers = hdr.build("department-sync", "PID-2", carry=carried)
        assert headers == [(hdr.FLOW, b"department-sync"), (hdr.SOURCE_ID, b"PID-2"), *carried]
        assert hdr.trace_headers(None) == []

    def test_replace_overrides_without_duplicates(self) -> None:
        headers = hdr.replace([("a", b"1"), ("b", b"2")], {"a": "3"})
        assert sorted(headers) == [("a", b"3"), ("b", b"2")]


class TestDeadLetterHeaders:
    def test_every_design_header_is_written_and_originals_kept(self) -> None:
        record = SourceRecord(
            topic="dingdee.bills.ready",
            partition=2,
            offset=41,
            key=b"BYJ202611010930000000001",
            value=b'{"schema_version":1}',
            headers=(("traceparent", b"00-abc-def-01"), ("dlq-replay-count", b"2")),
        )
        headers = dead_letter_headers(
            record,
            stage="loader",
            error_class=ErrorClass.PERMANENT,
            error_type="kingdee_validation",
            message="字段“费用项目”是必填项",
            attempts=1,
            failed_at=datetime(2026, 11, 28, 8, 0, tzinfo=UTC),
        )
        values = hdr.as_dict(headers)
        assert set(DLQ_HEADERS) <= set(values)
        assert values["dlq-original-topic"] == "dingdee.bills.ready"
        assert values["dlq-original-partition"] == "2"
        assert values["dlq-original-offset"] == "41"
        assert values["dlq-error-class"] == "permanent"
        assert values["dlq-error-message"] == "字段“费用项目”是必填项"
        assert values["dlq-failed-at"] == "2026-11-28T08:00:00.000+00:00"
        assert values["dlq-replay-count"] == "2", "a replayed record keeps its replay count"
        assert values["traceparent"] == "00-abc-def-01"
