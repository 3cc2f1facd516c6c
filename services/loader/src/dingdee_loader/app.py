"""The loader service: ``bills.ready`` → Kingdee BatchSave → ``bills.result`` / ``dlq.loader``.

One consume loop fetches, groups bills into micro-batches and hands due batches to writer tasks (at
most ``kingdee.concurrency`` in flight, one Kingdee session each). Offsets are committed only up to
the first bill without a final outcome, after its result (and dead letter) were acked by Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError
from opentelemetry import trace

from dingdee_common import codec
from dingdee_common.contracts.v1 import BillOutcome, BillReady, BillResult, utcnow
from dingdee_common.errors import DingdeeError, ErrorClass, PoisonMessageError
from dingdee_common.floodguard import FloodGuard
from dingdee_common.kafka import headers as hdr
from dingdee_common.kafka.dlq import REPLAY_COUNT, DeadLetterPublisher, SourceRecord
from dingdee_common.kafka.topics import Topics
from dingdee_common.observability.logging import get_logger
from dingdee_common.observability.server import Health
from dingdee_common.observability.tracing import batch_links, consume_span, tracer
from dingdee_loader.batcher import Batches, BillWriter, OffsetTracker, Pending, Resolution
from dingdee_loader.kingdee.client import KingdeeClient, Lane
from dingdee_loader.metrics import STAGE, LoaderMetrics
from dingdee_loader.settings import LoaderSettings

__all__ = ["LoaderApp"]

log = get_logger(__name__)
_OUTCOMES = {"saved": BillOutcome.SAVED, "already_exists": BillOutcome.ALREADY_EXISTS}


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, app: LoaderApp) -> None:
        self._app = app

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._app.drain(set(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self._app.assigned(set(assigned))


class LoaderApp:
    """Wires consumer, producer, Kingdee lanes and the writer; ``run`` until stop or fatal."""

    def __init__(
        self,
        settings: LoaderSettings,
        metrics: LoaderMetrics,
        health: Health,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        client: KingdeeClient,
    ) -> None:
        self.s = settings
        self.metrics = metrics
        self.health = health
        self.consumer = consumer
        self.producer = producer
        self.topics = Topics(settings.kafka.topic_prefix)
        self.dlq = DeadLetterPublisher(producer, self.topics, STAGE)
        self.writer = BillWriter(
            client,
            settings.retry,
            metrics,
            precheck_always=settings.precheck == "always",
            batch_count=settings.batch_count,
        )
        self.client = client
        self.guard = FloodGuard(settings.flood_guard)
        self.batches = Batches(settings.batch_max_records, settings.batch_linger_seconds)
        self.trackers: dict[TopicPartition, OffsetTracker] = {}
        # A previous owner of a partition (a crashed pod) can have sent at most the bills it held
        # unresolved, all at or after the committed offset: the first window of records after an
        # assignment is checked in Kingdee before it is sent.
        self.suspect_until: dict[TopicPartition, int] = {}
        self.window = settings.max_pending_records + settings.batch_max_records
        self.assigned_at: dict[TopicPartition, float] = {}
        self.lanes: asyncio.Queue[Lane] = asyncio.Queue()
        self.all_lanes = [Lane(i, settings.kingdee) for i in range(settings.kingdee.concurrency)]
        for lane in self.all_lanes:
            self.lanes.put_nowait(lane)
        self.tasks: set[asyncio.Task[None]] = set()
        self.pending = 0
        self.fatal: BaseException | None = None
        self.wake = asyncio.Event()
        self.dlq_lock = asyncio.Lock()
        self.committed: dict[TopicPartition, int] = {}
        self.open_since: dict[tuple[TopicPartition, int], float] = {}

    @property
    def listener(self) -> ConsumerRebalanceListener:
        return _Rebalance(self)

    # ---- rebalance ---------------------------------------------------------------------------

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        """Open a suspect window per partition: its first records may have been sent before."""
        for tp in partitions:
            self.trackers.setdefault(tp, OffsetTracker())
            self.suspect_until.pop(tp, None)
            self.assigned_at[tp] = time.time()
        log.info("loader.partitions.assigned", partitions=sorted(str(tp) for tp in partitions))

    async def drain(self, partitions: set[TopicPartition]) -> None:
        """Before giving partitions up: write what is buffered, wait for it, commit."""
        for batch in self.batches.due(flush=True):
            self.dispatch(batch)
        if self.tasks:
            await asyncio.wait(set(self.tasks))
        await self.commit()
        for tp in partitions:
            self.trackers.pop(tp, None)
            self.suspect_until.pop(tp, None)

    # ---- consuming ---------------------------------------------------------------------------

    def _source(self, record: ConsumerRecord[bytes, bytes]) -> SourceRecord:
        return SourceRecord(
            record.topic,
            record.partition,
            record.offset,
            record.key,
            record.value,
            tuple(record.headers or ()),
        )

    async def add(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        """Take one record: decode it, open its CONSUMER span, queue it for a batch."""
        tracker = self.trackers.setdefault(tp, OffsetTracker())
        if not tracker.add(record.offset):
            return
        source = self._source(record)
        with consume_span(
            record.topic,
            source.headers,
            partition=record.partition,
            offset=record.offset,
            group=self.s.group_id,
        ) as span:
            try:
                bill = codec.decode_model(
                    record.value, BillReady, supported_versions=frozenset({1})
                )
            except PoisonMessageError as exc:
                await self._poison(tp, source, exc)
                return
            context = trace.set_span_in_context(span)
        replayed = int(hdr.get(source.headers, REPLAY_COUNT) or "0") > 0
        window_end = self.suspect_until.setdefault(tp, record.offset + self.window)
        # only records written before this assignment can have been fetched by the previous owner
        written_before = (
            record.timestamp / 1000
            < self.assigned_at.get(tp, float("inf")) + self.s.precheck_clock_skew_seconds
        )
        suspect = replayed or (record.offset < window_end and written_before)
        self.metrics.stage.records_in.labels(STAGE, bill.flow).inc()
        self.pending += 1
        self.open_since[(tp, record.offset)] = record.timestamp / 1000
        self.batches.add(Pending(source, bill, suspect, context))

    async def _poison(self, tp: TopicPartition, source: SourceRecord, exc: DingdeeError) -> None:
        await self.dlq.publish(
            source, error_class=ErrorClass.POISON, error_type=exc.error_type, message=str(exc)
        )
        flow = hdr.get(source.headers, hdr.FLOW) or "unknown"
        self.metrics.stage.dead_letters.labels(STAGE, flow, ErrorClass.POISON.value).inc()
        log.warning("loader.record.poison", offset=source.offset, error=str(exc))
        self.trackers[tp].resolve(source.offset)
        self._guard(True)

    # ---- writing -----------------------------------------------------------------------------

    def dispatch(self, batch: list[Pending]) -> None:
        task = asyncio.create_task(self._write(batch))
        self.tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and self.fatal is None:
            self.fatal = task.exception()
        self.wake.set()

    async def _write(self, batch: list[Pending]) -> None:
        lane = await self.lanes.get()
        if self._stopped():  # flood guard: leave the batch uncommitted for after a restart
            self.lanes.put_nowait(lane)
            return
        self.metrics.batches_in_flight.inc()
        started = time.monotonic()
        try:
            with tracer().start_as_current_span(
                "kingdee BatchSave",
                kind=trace.SpanKind.CLIENT,
                links=batch_links([p.source.headers for p in batch]),
                attributes={"kingdee.form_id": batch[0].bill.form_id, "batch.size": len(batch)},
            ):
                resolutions = await self.writer.write(lane, batch)
        finally:
            self.lanes.put_nowait(lane)
            self.metrics.batches_in_flight.dec()
        await self._publish(resolutions)
        self.metrics.stage.processing.labels(STAGE).observe(time.monotonic() - started)
        log.info(
            "loader.batch.written",
            form_id=batch[0].bill.form_id,
            bills=len(batch),
            saved=sum(r.outcome == "saved" for r in resolutions),
            already_exists=sum(r.outcome == "already_exists" for r in resolutions),
            dead_lettered=sum(r.outcome == "dead_letter" for r in resolutions),
            lane=lane.index,
        )

    def _result(self, r: Resolution) -> BillResult:
        p = r.pending
        return BillResult(
            flow=p.bill.flow,
            bill_key=p.bill.bill_key,
            form_id=p.bill.form_id,
            outcome=_OUTCOMES.get(r.outcome, BillOutcome.FAILED),
            kingdee_id=r.kingdee_id,
            number=r.number,
            message=r.message,
            attempts=max(p.attempts, 1),
            source=p.bill.source,
            latency_seconds=round(time.monotonic() - p.consumed_at, 3),
        )

    async def _send_result(self, r: Resolution) -> asyncio.Future[object]:
        p = r.pending
        base = [(k, v) for k, v in p.source.headers if k in (hdr.FLOW, hdr.SOURCE_ID)]
        ack: asyncio.Future[object] = await self.producer.send(
            self.topics.bills_result,
            value=codec.encode_model(self._result(r)),
            key=p.bill.bill_key.encode(),
            headers=hdr.inject_context(base, p.context),
        )
        return ack

    async def _publish(self, resolutions: list[Resolution]) -> None:
        """Dead letters one by one (the flood guard may stop them), then the other results.

        A bill counts as resolved only once its dead letter and its result were acked. The flood
        guard hears of the batch's other outcomes first: dead letters wait for one another (one
        at a time), so after a restart, with many batches settling together, counting only the
        dead letters as they go out made 6 % of rejected rows look like 44 of 50 and tripped it.
        """
        done = [r for r in resolutions if r.outcome != "dead_letter"]
        for _ in done:
            self._guard(False)
        for r in resolutions:
            if r.outcome != "dead_letter" or r.error_class is None:
                continue
            async with self.dlq_lock:  # one at a time, so the guard stops at its exact limit
                if self._stopped():
                    return  # the rest stays uncommitted: redelivered after an operator restart
                await self.dlq.publish(
                    r.pending.source,
                    error_class=r.error_class,
                    error_type=r.error_type or "kingdee_error",
                    message=r.message or "",
                    attempts=max(r.pending.attempts, 1),
                )
                await (await self._send_result(r))
                log.warning(
                    "loader.bill.dead_lettered",
                    bill_key=r.pending.bill.bill_key,
                    error_class=r.error_class.value,
                    error_type=r.error_type,
                    reason=(r.message or "")[:300],
                    attempts=max(r.pending.attempts, 1),
                )
                self._resolved(r)
                self._guard(True)
        await asyncio.gather(*[await self._send_result(r) for r in done])
        for r in done:
            self._resolved(r)

    def _stopped(self) -> bool:
        return self.guard.tripped

    def _resolved(self, r: Resolution) -> None:
        p = r.pending
        tp = TopicPartition(p.source.topic, p.source.partition)
        tracker = self.trackers.get(tp)
        if tracker is not None:
            tracker.resolve(p.source.offset)
        self.pending -= 1
        self.open_since.pop((tp, p.source.offset), None)
        age = (utcnow() - p.bill.mapped_at).total_seconds()
        self.metrics.stage.record_age.labels(STAGE, p.bill.flow).observe(max(age, 0.0))
        flow = p.bill.flow
        outcome = "dead_lettered" if r.outcome == "dead_letter" else r.outcome
        self.metrics.stage.records_out.labels(STAGE, flow, outcome).inc()
        row = r.error_class.value if r.error_class is ErrorClass.EXHAUSTED else r.outcome
        self.metrics.rows.labels(flow, "rejected" if row == "dead_letter" else row).inc()
        if r.error_class is not None:
            self.metrics.stage.dead_letters.labels(STAGE, flow, r.error_class.value).inc()

    def _guard(self, dead_lettered: bool) -> None:
        if self.guard.record(dead_lettered):
            reason = self.guard.tripped_reason or "flood guard tripped"
            log.error("loader.floodguard.tripped", reason=reason)
            self.metrics.stage.flood_guard_tripped.labels(STAGE).set(1)
            self.metrics.stage.ready.labels(STAGE).set(0)
            self.health.set_not_ready(f"flood guard: {reason}")

    # ---- the loop ----------------------------------------------------------------------------

    async def commit(self) -> None:
        """Commit every partition's resolved prefix."""
        offsets = {}
        for tp, tracker in self.trackers.items():
            offset = tracker.committable()
            if offset is not None:
                offsets[tp] = offset
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            log.warning("loader.commit.failed", error=str(exc))
            return
        self.committed.update(offsets)

    def _update_lag(self) -> None:
        """Consumer lag in records (high watermark − committed) and seconds (oldest open bill)."""
        topic = self.topics.bills_ready
        lag = 0
        for tp in self.trackers:
            high = self.consumer.highwater(tp)
            if high is not None:
                lag += max(high - self.committed.get(tp, 0), 0)
        self.metrics.stage.consumer_lag.labels(STAGE, topic).set(lag)
        oldest = min(self.open_since.values(), default=None)
        seconds = time.time() - oldest if oldest is not None else 0.0
        self.metrics.stage.consumer_lag_seconds.labels(STAGE, topic).set(max(seconds, 0.0))

    async def _step(self) -> None:
        room = self.s.max_pending_records - self.pending
        if room <= 0 or self.guard.tripped:
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=0.5)
        else:
            timeout_ms = max(int(self.s.batch_linger_seconds * 1000), 10)
            fetched = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=room)
            for tp, records in fetched.items():
                for record in records:
                    await self.add(tp, record)
            for batch in self.batches.due():
                self.dispatch(batch)
        await self.commit()
        self._update_lag()
        self.health.progress()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set or a writer task failed fatally.

        Raises:
            BaseException: the fatal error of a writer task (credentials rejected, Kafka gone).
        """
        self.health.set_ready()
        self.metrics.stage.ready.labels(STAGE).set(1)
        while not stop.is_set() and self.fatal is None:
            await self._step()
        if self.fatal is None and not self.guard.tripped:
            for batch in self.batches.due(flush=True):
                self.dispatch(batch)
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=self.s.retry.deadline_seconds + 10)
        await self.commit()
        for lane in self.all_lanes:
            await lane.aclose()
        if self.fatal is not None:
            raise self.fatal
