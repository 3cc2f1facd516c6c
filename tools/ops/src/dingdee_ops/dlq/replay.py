"""The replay engine behind ``dingdee dlq replay`` (DESIGN §6).

One run:

1. reads the audit trail (which DLQ offsets earlier runs already handled) and, per DLQ partition,
   the replay consumer group's committed offset;
2. reads every DLQ record from there up to the end offsets seen at the start, and plans an action
   for each selected record: ``replay`` onto its original topic (checked against
   :meth:`Topics.replay_targets`), ``park`` (replayed ``max_replays`` times already),
   ``refuse`` (no allowed target) or ``already_replayed``;
3. unless it is a dry run, copies the records byte for byte (plus the replay headers), waits for
   the broker's ack of every copy in a chunk, and only then commits the group offset over the
   contiguous prefix of handled records — so Ctrl-C or SIGKILL at any point loses nothing; a re-run
   may copy a record again, which the loader's bill-key idempotency makes harmless;
4. writes one :class:`ReplayAudit` record to the audit topic, including the handled offset ranges.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from dingdee_common.codec import encode_model
from dingdee_common.contracts.v1 import ReplayAudit
from dingdee_common.kafka import dlq as dlq_headers
from dingdee_common.kafka import headers as hdr
from dingdee_common.kafka.clients import make_consumer, make_producer
from dingdee_common.kafka.reading import partitions_of
from dingdee_common.kafka.topics import Topics
from dingdee_common.observability.logging import get_logger
from dingdee_common.settings import KafkaSettings
from dingdee_ops.dlq.records import (
    PARKED_AT,
    REPLAY_RUN,
    REPLAYED_AT,
    REPLAYED_BY,
    REPLAYED_FROM,
    DeadLetter,
    Selection,
)
from dingdee_ops.dlq.scan import handled_offsets, read_audits, read_window, was_handled

__all__ = ["Action", "PlannedRecord", "ReplayEngine", "ReplayOptions", "ReplayReport"]

log = get_logger(__name__)
Progress = Callable[[int, int], None]


class Action:
    """What a run does with one selected dead letter."""

    REPLAY = "replay"
    PARK = "park"
    REFUSE = "refuse"
    ALREADY = "already_replayed"


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """One run's knobs; the defaults are the safe ones (dry run, capped, rate-limited)."""

    selection: Selection = field(default_factory=Selection)
    dry_run: bool = True
    rate_per_second: float = 50.0
    max_replays: int = 3
    target_override: str | None = None
    limit: int | None = None
    who: str = "unknown"
    sample_size: int = 5
    chunk_size: int = 100


@dataclass(frozen=True, slots=True)
class PlannedRecord:
    letter: DeadLetter
    action: str
    target: str | None


@dataclass
class ReplayReport:
    """What a run found and did; the CLI renders it, the audit record summarises it."""

    run_id: str
    dry_run: bool
    started_at: datetime
    filters: dict[str, Any]
    planned: Counter[str] = field(default_factory=Counter)
    done: Counter[str] = field(default_factory=Counter)
    groups: Counter[tuple[str, str, str, str, str]] = field(default_factory=Counter)
    targets: Counter[str] = field(default_factory=Counter)
    sample: list[PlannedRecord] = field(default_factory=list)
    copied: dict[str, set[int]] = field(default_factory=dict)
    finished_at: datetime | None = None
    outcome: str = "running"

    def audit(self, who: str) -> ReplayAudit:
        counts = {f"planned_{k}": v for k, v in self.planned.items()}
        counts.update({f"done_{k}": v for k, v in self.done.items()})
        return ReplayAudit(
            run_id=self.run_id,
            who=who,
            started_at=self.started_at,
            finished_at=self.finished_at,
            dry_run=self.dry_run,
            filters=self.filters,
            counts=counts,
            outcome=self.outcome,
            handled={name: _ranges(sorted(offsets)) for name, offsets in self.copied.items()},
        )


def _ranges(offsets: Sequence[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for offset in offsets:
        if out and offset == out[-1][1] + 1:
            out[-1] = (out[-1][0], offset)
        else:
            out.append((offset, offset))
    return out


class _Pacer:
    """At most ``rate`` records per second (0 or less: no limit)."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0

    async def wait(self) -> None:
        if not self._interval:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._next = max(self._next, now)
        if self._next > now:
            await asyncio.sleep(self._next - now)
        self._next += self._interval


class ReplayEngine:
    """Plans and runs DLQ replays for one Kafka cluster and topic prefix."""

    def __init__(self, settings: KafkaSettings, topics: Topics | None = None) -> None:
        self._settings = settings
        self._topics = topics or Topics(settings.topic_prefix)

    @property
    def group_id(self) -> str:
        """The consumer group whose committed offsets mark what replays have handled."""
        return f"{self._topics.prefix}dlq-replay"

    async def run(self, options: ReplayOptions, progress: Progress | None = None) -> ReplayReport:
        """Run one replay (or dry run) and write its audit record.

        Called by the CLI; cancellation (Ctrl-C) stops after the copies in flight and still writes
        the audit record with outcome ``interrupted``.

        Raises:
            FatalError: a DLQ topic is missing or the broker stops answering.
            KafkaError: the broker refused a copy; nothing unacknowledged was marked handled.
        """
        report = ReplayReport(
            run_id=uuid.uuid4().hex,
            dry_run=options.dry_run,
            started_at=datetime.now(UTC),
            filters={**options.selection.describe(), **_knobs(options)},
        )
        consumer = make_consumer(self._settings, group_id=self.group_id)
        await consumer.start()
        try:
            plan, positions = await self._plan(consumer, options, report)
            if not options.dry_run:
                await self._execute(consumer, plan, positions, options, report, progress)
            report.outcome = "dry_run" if options.dry_run else "completed"
        except asyncio.CancelledError:
            report.outcome = "interrupted"
            raise
        except Exception:
            report.outcome = "failed"
            raise
        finally:
            await consumer.stop()
            report.finished_at = datetime.now(UTC)
            await asyncio.shield(self._write_audit(report, options.who))
        return report

    async def _plan(
        self, consumer: AIOKafkaConsumer, options: ReplayOptions, report: ReplayReport
    ) -> tuple[list[PlannedRecord], dict[TopicPartition, _Position]]:
        done_before = handled_offsets(await read_audits(self._settings, self._topics))
        tps = await partitions_of(consumer, [self._topics.dlq(s) for s in options.selection.stages])
        start: dict[TopicPartition, int] = {}
        for tp in tps:
            committed = await consumer.committed(tp)
            if committed is not None:
                start[tp] = committed
        letters, end = await read_window(consumer, tps, start)
        positions = {tp: _Position(start.get(tp), end[tp]) for tp in tps}
        plan: list[PlannedRecord] = []
        for letter in letters:
            tp = TopicPartition(letter.topic, letter.partition)
            positions[tp].scanned.append(letter.offset)
            if was_handled(done_before, letter):
                positions[tp].handled.add(letter.offset)
                if options.selection.matches(letter):
                    self._count(report, PlannedRecord(letter, Action.ALREADY, None), options)
                continue
            if not options.selection.matches(letter):
                continue
            if options.limit is not None and len(plan) >= options.limit:
                continue
            planned = self._decide(letter, options)
            self._count(report, planned, options)
            if planned.action in (Action.REPLAY, Action.PARK):
                plan.append(planned)
        return plan, positions

    def _decide(self, letter: DeadLetter, options: ReplayOptions) -> PlannedRecord:
        if letter.replay_count >= options.max_replays:
            return PlannedRecord(letter, Action.PARK, self._topics.parking)
        target = options.target_override or letter.original_topic
        if target is None or (
            options.target_override is None and target not in self._topics.replay_targets()
        ):
            return PlannedRecord(letter, Action.REFUSE, target)
        return PlannedRecord(letter, Action.REPLAY, target)

    @staticmethod
    def _count(report: ReplayReport, planned: PlannedRecord, options: ReplayOptions) -> None:
        letter = planned.letter
        report.planned[planned.action] += 1
        report.groups[
            (letter.stage, letter.error_class, letter.error_type, letter.flow, planned.action)
        ] += 1
        if planned.target:
            report.targets[planned.target] += 1
        if len(report.sample) < options.sample_size:
            report.sample.append(planned)

    async def _execute(
        self,
        consumer: AIOKafkaConsumer,
        plan: list[PlannedRecord],
        positions: dict[TopicPartition, _Position],
        options: ReplayOptions,
        report: ReplayReport,
        progress: Progress | None,
    ) -> None:
        producer = make_producer(self._settings)
        await producer.start()
        pacer = _Pacer(options.rate_per_second)
        total = len(plan)
        inflight: list[tuple[PlannedRecord, asyncio.Future[Any]]] = []
        if progress:
            progress(0, total)
        try:
            for first in range(0, total, options.chunk_size):
                chunk = plan[first : first + options.chunk_size]
                await self._send_chunk(producer, chunk, pacer, report, options.who, inflight)
                await asyncio.gather(*(future for _, future in inflight))
                await self._acknowledge(consumer, positions, report, inflight)
                if progress:
                    progress(min(first + len(chunk), total), total)
        finally:
            # stop() flushes what the producer already holds; whatever the broker acked on the
            # way out (Ctrl-C mid-chunk) is recorded too, so a re-run does not copy it again
            await producer.stop()
            await asyncio.shield(self._acknowledge(consumer, positions, report, inflight))

    @staticmethod
    async def _send_chunk(
        producer: AIOKafkaProducer,
        chunk: list[PlannedRecord],
        pacer: _Pacer,
        report: ReplayReport,
        who: str,
        inflight: list[tuple[PlannedRecord, asyncio.Future[Any]]],
    ) -> None:
        """Hand every record of ``chunk`` to the producer (paced); acks arrive in ``inflight``."""
        for item in chunk:
            await pacer.wait()
            headers = _copy_headers(item, report.run_id, who)
            assert item.target is not None  # noqa: S101 - REPLAY and PARK always carry a target
            future = await producer.send(
                item.target, value=item.letter.value, key=item.letter.key, headers=headers
            )
            inflight.append((item, future))

    @staticmethod
    async def _acknowledge(
        consumer: AIOKafkaConsumer,
        positions: dict[TopicPartition, _Position],
        report: ReplayReport,
        inflight: list[tuple[PlannedRecord, asyncio.Future[Any]]],
    ) -> None:
        """Mark the copies the broker acked as handled and commit the DLQ offsets past them."""
        acked = [
            item for item, f in inflight if f.done() and not f.cancelled() and not f.exception()
        ]
        inflight.clear()
        if not acked:
            return
        for item in acked:
            report.done[item.action] += 1
            name = f"{item.letter.topic}:{item.letter.partition}"
            report.copied.setdefault(name, set()).add(item.letter.offset)
            tp = TopicPartition(item.letter.topic, item.letter.partition)
            positions[tp].handled.add(item.letter.offset)
        await _commit(consumer, positions)
        log.info("dlq.replay.chunk_acked", run_id=report.run_id, records=len(acked))

    async def _write_audit(self, report: ReplayReport, who: str) -> None:
        producer = make_producer(self._settings)
        await producer.start()
        try:
            await producer.send_and_wait(
                self._topics.replay_audit,
                value=encode_model(report.audit(who)),
                key=report.run_id.encode(),
            )
        finally:
            await producer.stop()
        log.info(
            "dlq.replay.audited",
            run_id=report.run_id,
            outcome=report.outcome,
            dry_run=report.dry_run,
            planned=dict(report.planned),
            done=dict(report.done),
        )


@dataclass
class _Position:
    """One DLQ partition during a run: where it started, what it saw, what is handled."""

    committed: int | None
    end: int
    scanned: list[int] = field(default_factory=list)
    handled: set[int] = field(default_factory=set)

    def commit_offset(self) -> int | None:
        """The offset after the contiguous prefix of handled records, if it moved."""
        if not self.scanned:
            return None
        position = next((o for o in self.scanned if o not in self.handled), self.end)
        start = self.scanned[0] if self.committed is None else self.committed
        return position if position != start else None


async def _commit(consumer: AIOKafkaConsumer, positions: dict[TopicPartition, _Position]) -> None:
    offsets = {}
    for tp, pos in positions.items():
        target = pos.commit_offset()
        if target is not None:
            offsets[tp] = target
    if offsets:
        await consumer.commit(offsets)
        for tp, target in offsets.items():
            positions[tp].committed = target


def _copy_headers(item: PlannedRecord, run_id: str, who: str) -> hdr.Headers:
    letter = item.letter
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    updates = {REPLAY_RUN: run_id, REPLAYED_BY: who, REPLAYED_FROM: letter.coordinates}
    if item.action == Action.PARK:
        updates[PARKED_AT] = now
    else:
        updates[dlq_headers.REPLAY_COUNT] = str(letter.replay_count + 1)
        updates[REPLAYED_AT] = now
    return hdr.replace(letter.headers, updates)


def _knobs(options: ReplayOptions) -> dict[str, Any]:
    knobs: dict[str, Any] = {
        "max_replays": options.max_replays,
        "rate_per_second": options.rate_per_second,
    }
    if options.target_override:
        knobs["target_override"] = options.target_override
    if options.limit is not None:
        knobs["limit"] = options.limit
    return knobs
