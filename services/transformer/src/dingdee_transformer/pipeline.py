"""One ``approvals.raw`` record → one outcome: a bill to publish, a skip, or a dead letter.

No Kafka I/O here: the batch loop (``app.py``) feeds records in and acts on the outcomes. This is
the one place per service that calls :func:`dingdee_common.errors.classify`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Span

from dingdee_common.codec import decode_model, encode_model
from dingdee_common.contracts.v1 import SCHEMA_VERSION, ApprovalSnapshot, BillReady
from dingdee_common.errors import Decision, ErrorClass, PermanentError, Verdict, classify
from dingdee_common.kafka import headers as hdr
from dingdee_common.kafka.dlq import SourceRecord
from dingdee_common.observability.logging import get_logger
from dingdee_common.observability.tracing import consume_span, record_error, recording
from dingdee_transformer.flowspec import CompiledFlow
from dingdee_transformer.mapping import MappingError, Skip, map_snapshot
from dingdee_transformer.metrics import STAGE, TransformerMetrics

__all__ = ["DeadLetter", "Emit", "Parked", "Processed", "Processor", "Seen", "Skipped"]

log = get_logger(__name__)
SUPPORTED_VERSIONS = frozenset({SCHEMA_VERSION})
SeenLookup = Callable[[str], "Seen | None"]
MAX_FINGERPRINTS = 8


@dataclass(frozen=True, slots=True)
class Seen:
    """What the dedup table remembers per process instance: recently emitted fingerprints.

    Several, not just the last: after a rebalance the same records are read again, and an older
    snapshot replayed after a newer one must still count as already emitted.
    """

    fingerprints: tuple[str, ...]
    bill_key: str
    business_id: str | None = None  # the approval's 审批编号, named in a linked-change dead letter

    def knows(self, fingerprint: str) -> bool:
        return fingerprint in self.fingerprints

    def adding(self, fingerprint: str, bill_key: str, business_id: str | None = None) -> Seen:
        """This record plus ``fingerprint`` (kept to the most recent :data:`MAX_FINGERPRINTS`)."""
        kept = tuple(f for f in self.fingerprints if f != fingerprint)
        return Seen((*kept, fingerprint)[-MAX_FINGERPRINTS:], bill_key, business_id)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"fps": list(self.fingerprints), "bill_key": self.bill_key}
        if self.business_id:
            out["business_id"] = self.business_id
        return out

    @classmethod
    def from_value(cls, value: Any) -> Seen | None:
        if not isinstance(value, Mapping) or "bill_key" not in value:
            return None
        fps = value.get("fps")
        business_id = value.get("business_id")
        prints = (
            tuple(str(f) for f in fps) if isinstance(fps, list) else (str(value.get("fp", "")),)
        )
        return cls(prints, str(value["bill_key"]), str(business_id) if business_id else None)


@dataclass(frozen=True, slots=True)
class Emit:
    """Publish ``value`` to ``bills.ready`` under ``key``; remember ``seen`` once acked."""

    flow: str
    process_instance_id: str
    key: bytes
    value: bytes
    headers: hdr.Headers
    seen: Seen


@dataclass(frozen=True, slots=True)
class Skipped:
    flow: str
    reason: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    flow: str
    verdict: Verdict


@dataclass(frozen=True, slots=True)
class Parked:
    """Only live lookups missed: the record waits for the rows (``parking.py``, issue #14)."""

    flow: str
    process_instance_id: str
    waits: tuple[tuple[str, str], ...]  # (reference source, key)
    reason: str
    at: float = field(default_factory=time.monotonic)  # when mapped: a later change retries it


Processed = Emit | Skipped | DeadLetter | Parked


def _parkable(exc: BaseException) -> tuple[tuple[str, str], ...] | None:
    """The (source, key) pairs a mapping error waits for, if a missing reference is its only
    problem."""
    if not isinstance(exc, MappingError) or not exc.errors:
        return None
    waits = [e.waits_on for e in exc.errors]
    if any(w is None for w in waits):
        return None
    return tuple(dict.fromkeys(w for w in waits if w is not None))


def _dead_letter_verdict(exc: BaseException) -> Verdict:
    verdict = classify(exc)
    if verdict.decision is Decision.DEAD_LETTER and verdict.error_class is not None:
        return verdict
    # Mapping is pure: a "transient" or "fatal" verdict here can only be a bug for this record, and
    # retrying or crashing would block the partition forever.
    return Verdict(Decision.DEAD_LETTER, ErrorClass.POISON, verdict.error_type, verdict.message)


class Processor:
    """Maps records of every configured flow; called by the batch loop, one record at a time."""

    def __init__(
        self,
        flows: Mapping[str, CompiledFlow],
        metrics: TransformerMetrics,
        *,
        source_topic: str,
        bills_topic: str,
        group: str,
    ) -> None:
        self._flows = flows
        self._metrics = metrics
        self._records_in: dict[str, Any] = {}  # flow label → its counter child, looked up once
        self._source_topic = source_topic
        self._bills_topic = bills_topic
        self._group = group

    def flow_label(self, flow: str | None) -> str:
        """A bounded metric label: the flow id if configured, else ``unknown``."""
        return flow if flow is not None and flow in self._flows else "unknown"

    def process(self, record: SourceRecord, seen: SeenLookup) -> Processed:
        """Decode, dedup and map one record (never raises; failures become :class:`DeadLetter`).

        Inside a CONSUMER span when spans are recorded; otherwise the record's trace headers pass
        on to its bill unchanged (DESIGN §11, "spans only where they go").
        """
        if not recording():
            return self._process(record, seen, None, hdr.trace_headers(record.headers))
        with consume_span(
            self._source_topic,
            record.headers,
            partition=record.partition,
            offset=record.offset,
            group=self._group,
        ) as span:
            return self._process(record, seen, span, None)

    def _process(
        self, record: SourceRecord, seen: SeenLookup, span: Span | None, carry: hdr.Headers | None
    ) -> Processed:
        snapshot: ApprovalSnapshot | None = None
        try:
            snapshot = decode_model(
                record.value, ApprovalSnapshot, supported_versions=SUPPORTED_VERSIONS
            )
            self._count_in(self.flow_label(snapshot.flow))
            return self._map(snapshot, seen, carry)
        except Exception as exc:  # noqa: BLE001 - the one classify() call of this service
            # the flow of an undecodable record is the one its header names, if any
            flow_id = snapshot.flow if snapshot is not None else hdr.get(record.headers, hdr.FLOW)
            waits = _parkable(exc)
            if waits is not None and snapshot is not None:
                return Parked(
                    self.flow_label(flow_id), snapshot.process_instance_id, waits, str(exc)
                )
            verdict = _dead_letter_verdict(exc)
            if span is not None:
                record_error(span, exc, verdict.error_type)
            self._count_field_errors(exc)
            return DeadLetter(self.flow_label(flow_id), verdict)

    def _count_in(self, flow: str) -> None:
        counter = self._records_in.get(flow)
        if counter is None:
            counter = self._records_in[flow] = self._metrics.stage.records_in.labels(STAGE, flow)
        counter.inc()

    def _count_field_errors(self, exc: BaseException) -> None:
        if isinstance(exc, MappingError):
            for err in exc.errors:
                rule = err.rule.split(" ", 1)[0]
                self._metrics.field_errors.labels(self.flow_label(exc.flow), rule).inc()

    def _map(
        self, snapshot: ApprovalSnapshot, seen: SeenLookup, carry: hdr.Headers | None
    ) -> Processed:
        flow = self._flows.get(snapshot.flow)
        if flow is None:
            raise PermanentError(
                f"approval {snapshot.business_id or snapshot.process_instance_id}: flow "
                f"{snapshot.flow!r} is not configured in this transformer's flows.yaml (or is "
                "disabled); add it, then replay this dead letter",
                field="flow",
                code="unknown_flow",
            )
        previous = seen(snapshot.process_instance_id)
        if previous is not None and previous.knows(snapshot.fingerprint):
            return Skipped(flow.id, "duplicate")

        result = map_snapshot(flow, snapshot, original_of=seen)
        if isinstance(result, Skip):
            reason = "linked_change" if snapshot.biz_action != "NONE" else "not_qualified"
            return Skipped(flow.id, reason)
        return self._emit(result, snapshot, previous, carry)

    def _emit(
        self,
        bill: BillReady,
        snapshot: ApprovalSnapshot,
        previous: Seen | None,
        carry: hdr.Headers | None,
    ) -> Emit:
        # The bill carries the context of this record's process span (a new span of the
        # approval's trace): a span per record, not a second one just for the publish. Without
        # a span, the record's own trace headers (``carry``).
        headers = hdr.build(bill.flow, snapshot.process_instance_id, carry=carry)
        return Emit(
            flow=bill.flow,
            process_instance_id=snapshot.process_instance_id,
            key=bill.bill_key.encode(),
            value=encode_model(bill),
            headers=headers,
            seen=(
                previous.adding(snapshot.fingerprint, bill.bill_key, snapshot.business_id)
                if previous is not None
                else Seen((snapshot.fingerprint,), bill.bill_key, snapshot.business_id)
            ),
        )
