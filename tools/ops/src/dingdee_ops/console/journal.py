"""What the pipeline topics say, read once per refresh: approvals extracted, bills built, Kingdee
results, dead letters and parked records of the last ``window_hours``, indexed by approval.

The console never keeps its own copy of the pipeline's state: every page is drawn from the
latest :class:`Journal`, read with the same readers ``dingdee dlq`` and the tests use.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from dingdee_common.codec import decode_model
from dingdee_common.contracts.v1 import ApprovalSnapshot, BillOutcome, BillReady, BillResult
from dingdee_common.errors import FatalError, PoisonMessageError
from dingdee_common.kafka import headers as hdr
from dingdee_common.kafka.clients import make_consumer
from dingdee_common.kafka.reading import partitions_of, read_to_end
from dingdee_common.kafka.topics import STAGES, Topics
from dingdee_common.settings import KafkaSettings
from dingdee_ops.dlq.records import DeadLetter
from dingdee_ops.dlq.scan import handled_offsets, read_audits, read_window, was_handled
from dingdee_transformer.parking import FLOW as PARKED_FLOW

__all__ = ["Bill", "Journal", "Journey", "Result", "Snap", "StageCounts", "read_journal"]

_V1 = frozenset({1})
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
LOADED = frozenset({BillOutcome.SAVED, BillOutcome.ALREADY_EXISTS})


def _when(rec: Any) -> datetime:
    return datetime.fromtimestamp(rec.timestamp / 1000, UTC)


def _trace_id(headers: Iterable[tuple[str, bytes]] | None) -> str | None:
    parent = hdr.get(headers, "traceparent")
    parts = parent.split("-") if parent else []
    # only a W3C trace id goes into a link: records are hostile input
    return parts[1] if len(parts) == 4 and _TRACE_ID.fullmatch(parts[1]) else None


@dataclass(frozen=True, slots=True)
class Snap:
    """One approval snapshot on ``approvals.raw``."""

    coordinates: str
    at: datetime
    snapshot: ApprovalSnapshot
    trace_id: str | None

    @property
    def applicant(self) -> str:
        return str(self.snapshot.instance.get("originator_userid") or "")

    @property
    def title(self) -> str:
        return str(self.snapshot.instance.get("title") or "")


@dataclass(frozen=True, slots=True)
class Bill:
    """One bill on ``bills.ready``."""

    coordinates: str
    at: datetime
    bill: BillReady
    trace_id: str | None


@dataclass(frozen=True, slots=True)
class Result:
    """One Kingdee result on ``bills.result``."""

    coordinates: str
    at: datetime
    result: BillResult
    trace_id: str | None


@dataclass(frozen=True, slots=True)
class StageCounts:
    extracted: int = 0
    mapped: int = 0
    loaded: int = 0
    failed: int = 0
    dead_lettered: int = 0
    parked: int = 0
    waiting: int = 0  # now, not per window: claims parked until their master data appears


@dataclass
class Journey:
    """Everything the topics say about one approval (one process instance)."""

    process_instance_id: str
    flow: str = "-"
    business_id: str | None = None
    snaps: list[Snap] = field(default_factory=list)
    bills: list[Bill] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)

    @property
    def trace_ids(self) -> list[str]:
        seen = [s.trace_id for s in self.snaps if s.trace_id]
        seen += [b.trace_id for b in self.bills if b.trace_id]
        seen += [r.trace_id for r in self.results if r.trace_id]
        seen += [t for d in self.letters if (t := _trace_id(d.headers))]
        return list(dict.fromkeys(seen))

    @property
    def loaded(self) -> Result | None:
        return next((r for r in reversed(self.results) if r.result.outcome in LOADED), None)


@dataclass
class Journal:
    """The topics as read at ``read_at`` (pipeline records since ``since``; DLQ: all of it)."""

    read_at: datetime
    since: datetime
    snaps: list[Snap] = field(default_factory=list)
    bills: list[Bill] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    parked: list[DeadLetter] = field(default_factory=list)
    waiting: dict[bytes, str] = field(default_factory=dict)  # transformer.parked: key → flow
    handled: dict[str, set[int]] = field(default_factory=dict)
    undecodable: Counter[str] = field(default_factory=Counter)

    def pending(self, letter: DeadLetter) -> bool:
        """Not yet replayed or parked by a replay run."""
        return not was_handled(self.handled, letter)

    def counts(self, flow: str, hours: float) -> StageCounts:
        """Records of ``flow`` per stage in the last ``hours`` (of the read window)."""
        since = self.read_at - timedelta(hours=hours)
        return StageCounts(
            extracted=sum(s.snapshot.flow == flow and s.at >= since for s in self.snaps),
            mapped=sum(b.bill.flow == flow and b.at >= since for b in self.bills),
            loaded=sum(
                r.result.flow == flow and r.at >= since and r.result.outcome in LOADED
                for r in self.results
            ),
            failed=sum(
                r.result.flow == flow and r.at >= since and r.result.outcome not in LOADED
                for r in self.results
            ),
            dead_lettered=sum(d.flow == flow and d.failed_at >= since for d in self.letters),
            parked=sum(d.flow == flow and d.failed_at >= since for d in self.parked),
            waiting=sum(f == flow for f in self.waiting.values()),
        )

    def freshness(self, flow: str) -> dict[str, datetime | None]:
        """When each stage last wrote a record of ``flow``."""

        def last(times: Iterable[datetime]) -> datetime | None:
            return max(times, default=None)

        return {
            "extracted": last(s.at for s in self.snaps if s.snapshot.flow == flow),
            "mapped": last(b.at for b in self.bills if b.bill.flow == flow),
            "loaded": last(r.at for r in self.results if r.result.flow == flow),
        }

    def search(self, query: str, limit: int = 20) -> list[Journey]:
        """Approvals whose business id, instance id, applicant, bill key or number is ``query``
        (the applicant and the title also match a part)."""
        q = query.strip()
        if not q:
            return []
        pids: list[str] = []
        for s in self.snaps:
            snap = s.snapshot
            exact = q in (snap.business_id, snap.process_instance_id, s.applicant)
            if exact or (len(q) >= 2 and q in s.title):
                pids.append(snap.process_instance_id)
        pids += [b.bill.source.process_instance_id for b in self.bills if q == b.bill.bill_key]
        pids += [
            r.result.source.process_instance_id
            for r in self.results
            if q in (r.result.bill_key, r.result.number)
        ]
        pids += [d.source_id or d.key_text for d in self.letters if q in (d.key_text, d.source_id)]
        return [self.journey(pid) for pid in list(dict.fromkeys(pids))[:limit]]

    def journey(self, pid: str) -> Journey:
        """Every record of the approval whose process instance id is ``pid``."""
        out = Journey(pid)
        out.snaps = [s for s in self.snaps if s.snapshot.process_instance_id == pid]
        out.bills = [b for b in self.bills if b.bill.source.process_instance_id == pid]
        out.results = [r for r in self.results if r.result.source.process_instance_id == pid]
        keys = {pid, *(b.bill.bill_key for b in out.bills)}
        out.letters = [d for d in self.letters if d.source_id == pid or d.key_text in keys]
        if out.snaps:
            out.flow = out.snaps[-1].snapshot.flow
            out.business_id = out.snaps[-1].snapshot.business_id
        elif out.bills:
            out.flow = out.bills[-1].bill.flow
            out.business_id = out.bills[-1].bill.source.business_id
        elif out.letters:
            out.flow = out.letters[-1].flow
        return out

    def letter(self, topic: str, partition: int, offset: int) -> DeadLetter | None:
        """The dead letter (or parked record) at these coordinates."""
        for d in [*self.letters, *self.parked]:
            if (d.topic, d.partition, d.offset) == (topic, partition, offset):
                return d
        return None

    def snap_at(self, coordinates: str) -> Snap | None:
        return next((s for s in self.snaps if s.coordinates == coordinates), None)


Start = Callable[[AIOKafkaConsumer, list[TopicPartition]], Awaitable[dict[TopicPartition, int]]]


async def _read_from(
    settings: KafkaSettings, topic: str, start: Start, *, missing_ok: bool = False
) -> list[Any]:
    """Records of every partition of ``topic`` from the offsets ``start`` chooses to the ends.

    Raises:
        FatalError: the topic does not exist (unless ``missing_ok``: no records) or the broker
            stops answering.
    """
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        try:
            tps = await partitions_of(consumer, [topic])
        except FatalError:
            if missing_ok:
                return []
            raise
        records, _ = await read_to_end(consumer, tps, await start(consumer, tps))
        return records
    finally:
        await consumer.stop()


async def _read_since(settings: KafkaSettings, topic: str, since: datetime) -> list[Any]:
    """Records of ``topic`` written at or after ``since`` (the broker's index by time)."""
    since_ms = int(since.timestamp() * 1000)

    async def first_since(
        consumer: AIOKafkaConsumer, tps: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        found = await consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
        ends = await consumer.end_offsets(tps)
        return {tp: (at.offset if at is not None else ends[tp]) for tp, at in found.items()}

    records = await _read_from(settings, topic, first_since)
    return [r for r in records if r.timestamp >= since.timestamp() * 1000]


async def _read_all(settings: KafkaSettings, topics: list[str]) -> list[DeadLetter]:
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        letters, _ = await read_window(consumer, await partitions_of(consumer, topics))
        return letters
    finally:
        await consumer.stop()


async def _read_waiting(settings: KafkaSettings, topic: str) -> dict[bytes, str]:
    """The records parked now until their master data appears (issue #14): the compacted
    ``transformer.parked`` topic's last value per key, a tombstone meaning released. Empty when
    the topic does not exist (no live reference data deployed)."""

    async def beginning(
        _: AIOKafkaConsumer, tps: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, 0)

    waiting: dict[bytes, str] = {}
    for rec in await _read_from(settings, topic, beginning, missing_ok=True):
        key = rec.key or b""
        if rec.value is None:
            waiting.pop(key, None)
        else:
            waiting[key] = hdr.get(list(rec.headers), PARKED_FLOW) or "unknown"
    return waiting


def _coordinates(rec: Any) -> str:
    return f"{rec.topic}/{rec.partition}/{rec.offset}"


async def read_journal(settings: KafkaSettings, topics: Topics, window_hours: float) -> Journal:
    """Read the pipeline topics of the last ``window_hours`` and every DLQ and parked record.

    Raises:
        FatalError: a topic is missing or the broker stops answering.
    """
    now = datetime.now(UTC)
    journal = Journal(read_at=now, since=now - timedelta(hours=window_hours))
    for rec in await _read_since(settings, topics.approvals_raw, journal.since):
        try:
            snap = decode_model(rec.value, ApprovalSnapshot, supported_versions=_V1)
        except PoisonMessageError:
            journal.undecodable["extracted"] += 1
            continue
        journal.snaps.append(Snap(_coordinates(rec), _when(rec), snap, _trace_id(rec.headers)))
    for rec in await _read_since(settings, topics.bills_ready, journal.since):
        try:
            bill = decode_model(rec.value, BillReady, supported_versions=_V1)
        except PoisonMessageError:
            journal.undecodable["mapped"] += 1
            continue
        journal.bills.append(Bill(_coordinates(rec), _when(rec), bill, _trace_id(rec.headers)))
    for rec in await _read_since(settings, topics.bills_result, journal.since):
        try:
            result = decode_model(rec.value, BillResult, supported_versions=_V1)
        except PoisonMessageError:
            journal.undecodable["loaded"] += 1
            continue
        journal.results.append(
            Result(_coordinates(rec), _when(rec), result, _trace_id(rec.headers))
        )
    journal.letters = await _read_all(settings, [topics.dlq(stage) for stage in STAGES])
    journal.parked = await _read_all(settings, [topics.parking])
    journal.waiting = await _read_waiting(settings, topics.parked)
    journal.handled = handled_offsets(await read_audits(settings, topics))
    return journal
