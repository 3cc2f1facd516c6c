"""The record processor: decode, dedup by fingerprint, map, and what each outcome carries."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from dingdee_common.codec import encode_model, loads
from dingdee_common.errors import ErrorClass
from dingdee_common.kafka import headers as hdr
from dingdee_common.kafka.dlq import SourceRecord
from dingdee_transformer.flowspec import load_compiled
from dingdee_transformer.metrics import TransformerMetrics
from dingdee_transformer.pipeline import (
    MAX_FINGERPRINTS,
    DeadLetter,
    Emit,
    Parked,
    Processor,
    Seen,
    Skipped,
)
from tests.helpers import demo_flows_file
from tests.unit.transformer.samples import petty_form, snapshot

ROOT = Path(__file__).resolve().parents[3]
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _processor(registry: CollectorRegistry | None = None) -> Processor:
    return Processor(
        load_compiled(demo_flows_file()),
        TransformerMetrics.create(registry or CollectorRegistry()),
        source_topic="approvals.raw",
        bills_topic="bills.ready",
        group="transformer",
    )


def _record(value: bytes, offset: int = 0) -> SourceRecord:
    return SourceRecord(
        "approvals.raw", 0, offset, b"pi-0001", value, (("traceparent", TRACEPARENT.encode()),)
    )


class TestProcessor:
    @pytest.mark.parametrize("spans", [False, True])
    def test_the_bill_continues_the_records_trace(
        self, spans: bool, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Without recorded spans the trace headers pass on as they are; with a span, the bill
        # carries the span's context, a child in the same trace.
        monkeypatch.setattr("dingdee_transformer.pipeline.recording", lambda: spans)
        record = SourceRecord(
            "approvals.raw",
            0,
            0,
            b"pi-0001",
            encode_model(snapshot()),
            (("traceparent", TRACEPARENT.encode()), ("tracestate", b"dd=s:1"), ("x-other", b"1")),
        )
        out = _processor().process(record, lambda _pid: None)
        assert isinstance(out, Emit)
        headers = hdr.as_dict(out.headers)
        assert headers["traceparent"].split("-")[1] == TRACEPARENT.split("-")[1]
        assert headers["tracestate"] == "dd=s:1"
        assert "x-other" not in headers
        if not spans:
            assert headers["traceparent"] == TRACEPARENT

    def test_a_record_without_trace_headers_gets_a_new_trace(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # DESIGN §3: every message has a traceparent, also on the no-span fast path
        monkeypatch.setattr("dingdee_transformer.pipeline.recording", lambda: False)
        record = SourceRecord("approvals.raw", 0, 0, b"pi-0001", encode_model(snapshot()), ())
        out = _processor().process(record, lambda _pid: None)
        assert isinstance(out, Emit)
        ctx = trace.get_current_span(hdr.extract_context(out.headers)).get_span_context()
        assert ctx.is_valid, hdr.as_dict(out.headers)

    def test_emit_carries_key_value_and_headers(self) -> None:
        out = _processor().process(_record(encode_model(snapshot())), lambda _pid: None)
        assert isinstance(out, Emit)
        assert out.key == b"BYJ202611031200000000123"
        assert loads(out.value)["model"]["FBillNo"] == "BYJ202611031200000000123"
        headers = hdr.as_dict(out.headers)
        assert headers[hdr.FLOW] == "petty-cash" and headers[hdr.SOURCE_ID] == "pi-0001"
        assert out.seen == Seen(("fp-1",), "BYJ202611031200000000123", "202611031200000000123")
        assert Seen.from_value(out.seen.as_dict()) == out.seen, "the 审批编号 survives the table"

    def test_known_fingerprints_are_duplicates_new_ones_are_emitted(self) -> None:
        table: dict[str, Seen] = {}
        proc = _processor()
        for fp in ("a", "b", "a", "c", "b"):
            out = proc.process(_record(encode_model(snapshot(fingerprint=fp))), table.get)
            if isinstance(out, Emit):
                table[out.process_instance_id] = out.seen
        assert table["pi-0001"].fingerprints == ("a", "b", "c")

    def test_remembered_fingerprints_are_bounded(self) -> None:
        seen = Seen((), "K")
        for i in range(MAX_FINGERPRINTS + 3):
            seen = seen.adding(f"f{i}", "K")
        assert len(seen.fingerprints) == MAX_FINGERPRINTS
        assert seen.fingerprints[-1] == f"f{MAX_FINGERPRINTS + 2}"
        assert Seen.from_value(seen.as_dict()) == seen
        assert Seen.from_value({"fp": "x", "bill_key": "K"}) == Seen(("x",), "K")
        assert Seen.from_value("garbage") is None

    def test_skips_and_dead_letters(self) -> None:
        registry = CollectorRegistry()
        proc = _processor(registry)
        running = proc.process(
            _record(encode_model(snapshot(status="RUNNING", result=None))), lambda _: None
        )
        assert running == Skipped("petty-cash", "not_qualified")
        unknown = proc.process(_record(encode_model(snapshot(flow="payroll"))), lambda _: None)
        assert isinstance(unknown, DeadLetter)
        assert unknown.verdict.error_class is ErrorClass.PERMANENT
        assert unknown.verdict.error_type == "unknown_flow"
        assert unknown.flow == "unknown"
        # only a live lookup missed: the record waits for the row (issue #14)
        waits = proc.process(_record(encode_model(snapshot(userid="ghost"))), lambda _: None)
        assert isinstance(waits, Parked) and waits.waits == (("dingtalk_users", "ghost"),)
        # a missing row beside another broken rule: a dead letter at once
        form = petty_form(pay="支付宝")
        bad = proc.process(
            _record(encode_model(snapshot(form=form, userid="ghost"))), lambda _: None
        )
        assert isinstance(bad, DeadLetter) and bad.verdict.error_type == "mapping_invalid"
        errors = registry.get_sample_value(
            "dingdee_transformer_field_errors_total", {"flow": "petty-cash", "rule": "lookup"}
        )
        assert errors == 2.0
