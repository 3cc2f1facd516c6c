"""The batch loop: take a batch from the intake, map it, publish it, settle it in order.

The loop maps a batch, publishes every bill and dead letter of it, waits until the broker
acknowledged all of them, records the emitted fingerprints in the dedup table, and only then acks
the batch's messages — faust commits acked offsets only (at-least-once). A batch that cannot be
published is never acked: the worker stops instead, and the records are read again after the
restart. Its collaborators are small protocols (:class:`Source`, :class:`Offsets`,
:class:`Producer`): faust's in the service (``app.py``), in-memory fakes in the unit tests.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from faust.types import TP, Message

from dingdee_common.codec import dumps
from dingdee_common.errors import Decision, ErrorClass, FatalError, TransientError, Verdict
from dingdee_common.floodguard import FloodGuard
from dingdee_common.kafka.dlq import DeadLetterPublisher, SourceRecord
from dingdee_common.kafka.protocols import RecordBatches
from dingdee_common.observability.logging import get_logger
from dingdee_common.observability.server import Health
from dingdee_common.outcomes import Outcome
from dingdee_common.retry import retry_transient
from dingdee_transformer.metrics import STAGE, TransformerMetrics
from dingdee_transformer.outbox import Outbox
from dingdee_transformer.pipeline import DeadLetter, Emit, Parked, Processed, Processor, Seen
from dingdee_transformer.settings import TransformerSettings

__all__ = ["BatchLoop", "Offsets", "Producer", "Source"]

log = get_logger(__name__)


class Source(Protocol):
    """Where batches come from (:class:`~dingdee_transformer.intake.FetchIntake`)."""

    def ready(self) -> bool: ...

    async def take(self, max_records: int, linger: float) -> list[Message]: ...


class Offsets(Protocol):
    """The consumer's side of a batch: acks (committed by faust) and partition ends."""

    def ack(self, message: Message) -> bool: ...

    def highwater(self, tp: TP) -> int | None: ...


class Parking(Protocol):
    """Where records waiting for a reference go (``parking.ParkingLot``)."""

    def full(self) -> bool: ...

    async def park(self, record: SourceRecord, outcome: Parked) -> None: ...

    async def release(self, key: bytes | None) -> None: ...


class Producer(Protocol):
    """Where a batch's bills and changelog records go (resends too): record batches."""

    def record_batches(self) -> RecordBatches: ...


def _headers(raw: Any) -> tuple[tuple[str, bytes], ...]:
    if type(raw) is list and all(type(v) is bytes for _, v in raw):
        return tuple(raw)  # as aiokafka delivers them
    items: Iterable[Any] = raw.items() if isinstance(raw, Mapping) else (raw or ())
    return tuple((str(k), v if isinstance(v, bytes) else str(v).encode()) for k, v in items)


def _acknowledged(future: asyncio.Future[Any]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


@dataclass(frozen=True, slots=True)
class _Dispatched:
    """A mapped batch whose bills are on their way to the broker."""

    messages: Sequence[Message]
    outcomes: Sequence[Processed]
    sent: list[tuple[Emit, asyncio.Future[Any], int]]  # bill, its batch's future, source partition
    started: float
    wait_seconds: float  # how long the loop waited for these records
    map_seconds: float


@dataclass(frozen=True, slots=True)
class Stage:
    """What the loop reports to and answers to: metrics, health, the flood guard, the DLQ."""

    metrics: TransformerMetrics
    health: Health
    guard: FloodGuard
    dlq: DeadLetterPublisher


class BatchLoop:
    """Maps batch N+1 while the broker acknowledges batch N (two batches in flight at most)."""

    def __init__(
        self,
        settings: TransformerSettings,
        processor: Processor,
        stage: Stage,
        *,
        io: tuple[Source, Offsets, Producer],
        seen: MutableMapping[bytes, Any],
        topics: tuple[str, str],
        parking: Parking | None = None,
    ) -> None:
        """``io``: source, consumer, producer; ``seen``: the dedup table's store;
        ``topics``: ``bills.ready`` and the dedup table's changelog."""
        self.settings = settings
        self.processor = processor
        self.metrics = stage.metrics
        self.health = stage.health
        self.guard = stage.guard
        self.dlq = stage.dlq
        self.source, self.offsets, self.producer = io
        self.store = seen
        self.bills_topic, self.changelog = topics
        self.parking = parking
        self.stopped = asyncio.Event()
        # Fingerprints emitted but not yet remembered in the table (their batch is in flight).
        self._unsettled: dict[str, Seen] = {}

    def seen(self, pid: str) -> Seen | None:
        """What the dedup table remembers of ``pid`` (acked bills only)."""
        # The dict of the memory store that ``_remember`` writes to and recovery fills, read
        # directly: the table's ``get`` and even the store's go through a raised KeyError for
        # every instance not seen yet (most of them), ~1.5 µs each.
        return Seen.from_value(self.store.get(pid.encode()))

    async def run(self, fail: Callable[[BaseException], None]) -> None:
        """Run until stopped; any error goes to ``fail`` (which stops the worker).

        Batches are settled (bills confirmed, fingerprints remembered, offsets acked) strictly
        in order; a batch whose bills cannot be published stops the worker before anything after
        it is acked.
        """
        s = self.settings
        in_flight: _Dispatched | None = None
        try:
            while True:
                if in_flight is not None and not self.source.ready():
                    await self._settle(in_flight)  # nothing to overlap with: finish it now
                    in_flight = None
                waiting = time.perf_counter()
                messages = await self.source.take(s.batch_max_records, s.batch_linger_seconds)
                dispatched = await self._dispatch(messages, time.perf_counter() - waiting)
                if in_flight is not None:
                    await self._settle(in_flight)
                in_flight = dispatched
                if self.guard.tripped:
                    await self._settle(in_flight)
                    in_flight = None
                    await self._halt()
        except Exception as exc:  # noqa: BLE001 - a bug or a fatal error must stop the worker
            fail(exc)

    async def _halt(self) -> None:
        """Stop consuming after the flood guard tripped; only a restart resumes (DESIGN §4)."""
        self.health.set_not_ready(f"flood guard tripped: {self.guard.tripped_reason}")
        self.metrics.stage.flood_guard_tripped.labels(STAGE).set(1)
        self.metrics.stage.ready.labels(STAGE).set(0)
        log.error("transformer.floodguard.tripped", reason=self.guard.tripped_reason)
        await self.stopped.wait()

    async def _dispatch(self, messages: Sequence[Message], waited: float) -> _Dispatched:
        """Map a batch and hand its bills to the producer; dead letters are published at once."""
        started = time.perf_counter()
        records = [self._record(m) for m in messages]
        outcomes = self._process_all(records)
        mapped = time.perf_counter()
        sent = await self._send_all(records, outcomes)
        # Only the records processed before the flood guard tripped are acked; the rest are read
        # again after the restart that resumes the stage.
        return _Dispatched(
            messages[: len(outcomes)], outcomes, sent, started, waited, mapped - started
        )

    async def _settle(self, batch: _Dispatched) -> None:
        """Wait for the batch's bills, remember their fingerprints, then ack its records."""
        settling = time.perf_counter()
        counts: Counter[str] = Counter()
        changelog = await Outbox.open(self.producer.record_batches(), self.changelog)
        failed: set[asyncio.Future[Any]] = set()
        try:
            for emit, future, partition in batch.sent:
                if not _acknowledged(future):
                    await self._confirm(emit, future, failed)
                self._remember(emit, partition, changelog)
                counts[emit.flow] += 1
        finally:
            # Queued like any send: faust flushes its producer before every offset commit.
            await changelog.send()
            for flow, n in counts.items():
                self.metrics.stage.records_out.labels(STAGE, flow, Outcome.EMITTED.value).inc(n)
        ack = self.offsets.ack
        for message in batch.messages:
            ack(message)
        done = time.perf_counter()
        self.metrics.stage.processing.labels(STAGE).observe(done - batch.started)
        self._observe_lag(batch.messages, batch.outcomes)
        self.health.progress()
        log.info(
            "transformer.batch.done",
            records=len(batch.messages),
            wait_seconds=round(batch.wait_seconds, 4),
            map_seconds=round(batch.map_seconds, 4),
            settle_seconds=round(done - settling, 4),
        )

    def _observe_lag(self, messages: Sequence[Message], outcomes: Sequence[Processed]) -> None:
        """Record age (now - produce time upstream) and the lag left behind this batch.

        Lag in seconds is the age of the newest record processed while records remain behind
        it (an upper bound of the oldest unprocessed one's age), 0 when caught up.
        """
        if not messages:
            return
        now = time.time()
        last: dict[Any, Message] = {}
        ages: dict[str, list[float]] = {}
        for msg, outcome in zip(messages, outcomes, strict=True):
            last[msg.tp] = msg
            ages.setdefault(outcome.flow, []).append(max(now - msg.timestamp, 0))
        for flow, values in ages.items():
            observe = self.metrics.stage.record_age.labels(STAGE, flow).observe
            for age in values:
                observe(age)
        behind, oldest = 0, now
        for tp, msg in last.items():
            high = self.offsets.highwater(tp)
            remaining = max((high or 0) - (msg.offset + 1), 0)
            behind += remaining
            if remaining:
                oldest = min(oldest, msg.timestamp)
        topic = messages[0].topic
        self.metrics.stage.consumer_lag.labels(STAGE, topic).set(behind)
        self.metrics.stage.consumer_lag_seconds.labels(STAGE, topic).set(max(now - oldest, 0))

    def _record(self, msg: Message) -> SourceRecord:
        return SourceRecord(
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            key=msg.key,
            value=msg.value,
            headers=_headers(msg.headers),
        )

    def _process_all(self, records: Sequence[SourceRecord]) -> list[Processed]:
        unsettled = self._unsettled

        def seen(pid: str) -> Seen | None:
            return unsettled.get(pid) or self.seen(pid)

        outcomes: list[Processed] = []
        for record in records:
            if self.guard.tripped:
                break
            outcome = self.processor.process(record, seen)
            if isinstance(outcome, Emit):
                unsettled[outcome.process_instance_id] = outcome.seen
            outcomes.append(outcome)
            self.guard.record(isinstance(outcome, DeadLetter))
        return outcomes

    async def _send_all(
        self, records: Sequence[SourceRecord], outcomes: Sequence[Processed]
    ) -> list[tuple[Emit, asyncio.Future[Any], int]]:
        """Send the batch's bills (not yet confirmed) and dead letters (confirmed), count skips."""
        bills = await Outbox.open(self.producer.record_batches(), self.bills_topic)
        slots: list[tuple[Emit, int, int]] = []
        skipped: Counter[str] = Counter()
        try:
            for record, outcome in zip(records[: len(outcomes)], outcomes, strict=True):
                if isinstance(outcome, Parked):
                    await self._park(record, outcome)
                    continue
                if self.parking is not None:
                    await self.parking.release(record.key)
                if isinstance(outcome, Emit):
                    slot = bills.add(outcome.key, outcome.value, outcome.headers)
                    slots.append((outcome, slot, record.partition))
                elif isinstance(outcome, DeadLetter):
                    await self._dead_letter(record, outcome)
                else:
                    skipped[outcome.flow] += 1
                    self.metrics.skipped.labels(outcome.flow, outcome.reason).inc()
        finally:
            for flow, n in skipped.items():
                self.metrics.stage.records_out.labels(STAGE, flow, Outcome.SKIPPED.value).inc(n)
        futures = await bills.send()
        return [(emit, futures[slot], partition) for emit, slot, partition in slots]

    async def _park(self, record: SourceRecord, outcome: Parked) -> None:
        """A record that waits for a reference row; dead-lettered when it cannot wait."""
        if self.parking is None or self.parking.full():
            why = "no parking lot" if self.parking is None else "the parking lot is full"
            verdict = Verdict(
                Decision.DEAD_LETTER,
                ErrorClass.PERMANENT,
                "reference_missing",
                f"{outcome.reason} ({why})",
            )
            await self._dead_letter(record, DeadLetter(outcome.flow, verdict))
            return
        await self.parking.park(record, outcome)
        self.metrics.stage.records_out.labels(STAGE, outcome.flow, Outcome.PARKED.value).inc()

    def _remember(self, emit: Emit, partition: int, changelog: Outbox) -> None:
        """Record an acked bill's fingerprint in the ``seen`` table.

        Same effect as ``table[key] = value`` (store entry plus changelog record, which faust
        replays into the table on recovery), without faust's per-key changelog machinery, which
        cost more than the whole mapping. The changelog record goes to the approvals.raw record's
        partition, as faust's own table writes do: the worker that owns that partition restores
        it. The write (sent with the batch's others by ``changelog``) is flushed before the next
        offset commit like any send; if it were lost, the snapshot would be emitted once more and
        the loader's bill-key idempotency absorbs it.
        """
        key = emit.process_instance_id.encode()
        value = emit.seen.as_dict()
        self.store[key] = value
        if self._unsettled.get(emit.process_instance_id) is emit.seen:
            del self._unsettled[emit.process_instance_id]
        changelog.add(key, dumps(value), [], partition)

    async def _confirm(
        self, emit: Emit, future: asyncio.Future[Any], failed: set[asyncio.Future[Any]]
    ) -> None:
        """Wait for the broker's ack of one bill; re-send it alone on failure, within the budget.

        ``failed`` collects the record batches that failed, so each is logged once, not once
        per bill in it.

        Raises:
            FatalError: the bill could not be published within the budget; the batch stays unacked.
        """
        try:
            await future
            return
        except Exception as exc:  # noqa: BLE001 - any send failure is retried below
            if future not in failed:
                failed.add(future)
                log.warning("transformer.bill.send_failed", error=type(exc).__name__)

        async def resend() -> None:
            try:
                outbox = await Outbox.open(self.producer.record_batches(), self.bills_topic)
                outbox.add(emit.key, emit.value, emit.headers)
                for batch in await outbox.send():
                    await batch
            except Exception as exc:
                raise TransientError(f"bills.ready send failed: {type(exc).__name__}") from exc

        try:
            await retry_transient(resend, self.settings.retry)
        except TransientError as exc:
            raise FatalError(
                f"could not publish to {self.bills_topic}: {exc}; check the broker and "
                "DINGDEE_KAFKA__BOOTSTRAP_SERVERS",
                code="publish_failed",
            ) from exc

    async def _dead_letter(self, record: SourceRecord, outcome: DeadLetter) -> None:
        verdict = outcome.verdict
        error_class = verdict.error_class or ErrorClass.POISON
        await self.dlq.publish(
            record, error_class=error_class, error_type=verdict.error_type, message=verdict.message
        )
        self.metrics.stage.dead_letters.labels(STAGE, outcome.flow, error_class.value).inc()
        log.warning(
            "transformer.record.dead_lettered",
            flow=outcome.flow,
            error_class=error_class.value,
            error_type=verdict.error_type,
            reason=verdict.message[:500],
            **{"kafka.partition": record.partition, "kafka.offset": record.offset},
        )
        self.metrics.stage.records_out.labels(
            STAGE, outcome.flow, Outcome.DEAD_LETTERED.value
        ).inc()
