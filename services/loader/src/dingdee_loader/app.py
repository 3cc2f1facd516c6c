"""The loader service: ``bills.ready`` → Kingdee BatchSave → ``bills.result`` / ``dlq.loader``.

A thin consume loop in the shape of quix-streams' sinks: it fetches, groups bills into
micro-batches (``Batches``) and hands due batches to writer tasks (at most ``kingdee.concurrency``
in flight, one Kingdee session each); ``KingdeeSink.write`` turns a batch into per-bill
resolutions, which the ``Settler`` publishes and commits. When the sink reports back-pressure
(Kingdee as a whole failing) the loop pauses its partitions, holds the bills, and an ``Outage``
probes Kingdee until it answers, then resumes by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from opentelemetry import trace

from dingdee_common import codec
from dingdee_common.contracts.v1 import BillReady
from dingdee_common.errors import PoisonMessageError
from dingdee_common.floodguard import FloodGuard
from dingdee_common.kafka import headers as hdr
from dingdee_common.kafka.dlq import REPLAY_COUNT, SourceRecord
from dingdee_common.kafka.protocols import BatchConsumer, Producer
from dingdee_common.kafka.topics import Topics
from dingdee_common.observability.logging import get_logger
from dingdee_common.observability.server import Health
from dingdee_common.observability.tracing import batch_links, consume_span, tracer
from dingdee_common.outcomes import Outcome
from dingdee_loader.backpressure import Outage
from dingdee_loader.batcher import Batches, OffsetTracker, Pending, Resolution
from dingdee_loader.kingdee.client import Lane
from dingdee_loader.metrics import STAGE, LoaderMetrics
from dingdee_loader.settings import LoaderSettings
from dingdee_loader.settle import Settler
from dingdee_loader.sink import BillStore, KingdeeSink, KingdeeUnavailableError

__all__ = ["LoaderApp"]

log = get_logger(__name__)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, app: LoaderApp) -> None:
        self._app = app

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._app.drain(set(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self._app.assigned(set(assigned))


class LoaderApp:
    """Wires consumer, sink, settler and outage; ``run`` until stop or fatal."""

    def __init__(
        self,
        settings: LoaderSettings,
        metrics: LoaderMetrics,
        health: Health,
        consumer: BatchConsumer,
        producer: Producer,
        client: BillStore,
    ) -> None:
        self.s = settings
        self.metrics = metrics
        self.health = health
        self.consumer = consumer
        self.topics = Topics(settings.kafka.topic_prefix)
        self.sink = KingdeeSink(
            client,
            settings.retry,
            metrics,
            pause_after_failures=settings.backpressure.pause_after_failures,
            precheck_always=settings.precheck == "always",
            batch_count=settings.batch_count,
        )
        self.guard = FloodGuard(settings.flood_guard)
        self.settler = Settler(consumer, producer, self.topics, metrics, self.guard, health)
        self.outage = Outage(settings.backpressure.probe_policy, metrics, health, self._recovered)
        self.batches = Batches(settings.batch_max_records, settings.batch_linger_seconds)
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
        self.fatal: BaseException | None = None
        self.wake = asyncio.Event()

    @property
    def listener(self) -> ConsumerRebalanceListener:
        return _Rebalance(self)

    # ---- rebalance ---------------------------------------------------------------------------

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        """Open a suspect window per partition: its first records may have been sent before."""
        for tp in partitions:
            self.settler.trackers.setdefault(tp, OffsetTracker())
            self.suspect_until.pop(tp, None)
            self.assigned_at[tp] = time.time()
        if self.outage.active:
            self.consumer.pause(*partitions)
        log.info("loader.partitions.assigned", partitions=sorted(str(tp) for tp in partitions))

    async def drain(self, partitions: set[TopicPartition]) -> None:
        """Before giving partitions up: write what is buffered, wait for it, commit.

        During an outage nothing is written: the held bills of the revoked partitions are
        dropped uncommitted, for their next owner.
        """
        if not self.outage.active:
            for batch in self.batches.due(flush=True):
                self.dispatch(batch)
        if self.tasks:
            await asyncio.wait(set(self.tasks))
        await self.settler.commit()
        dropped = self.batches.drop({(tp.topic, tp.partition) for tp in partitions})
        self.settler.forget(partitions, dropped)
        for tp in partitions:
            self.suspect_until.pop(tp, None)

    # ---- consuming ---------------------------------------------------------------------------

    async def add(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        """Take one record: decode it, open its CONSUMER span, queue it for a batch."""
        if not self.settler.track(tp, record.offset):
            return
        source = SourceRecord(
            record.topic,
            record.partition,
            record.offset,
            record.key,
            record.value,
            tuple(record.headers or ()),
        )
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
                await self.settler.poison(tp, source, exc)
                return
            context = trace.set_span_in_context(span)
        self.metrics.stage.records_in.labels(STAGE, bill.flow).inc()
        self.settler.opened(tp, record.offset, record.timestamp / 1000)
        self.batches.add(Pending(source, bill, self._suspect(tp, record, source), context))

    def _suspect(
        self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes], source: SourceRecord
    ) -> bool:
        replayed = int(hdr.get(source.headers, REPLAY_COUNT) or "0") > 0
        window_end = self.suspect_until.setdefault(tp, record.offset + self.window)
        # only records written before this assignment can have been fetched by the previous owner
        written_before = (
            record.timestamp / 1000
            < self.assigned_at.get(tp, float("inf")) + self.s.precheck_clock_skew_seconds
        )
        return replayed or (record.offset < window_end and written_before)

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
        if self.guard.tripped:  # flood guard: leave the batch uncommitted for after a restart
            self.lanes.put_nowait(lane)
            return
        if self.outage.active:  # began while this batch waited for a lane
            self.lanes.put_nowait(lane)
            self.batches.hold(batch)
            return
        self.metrics.batches_in_flight.inc()
        started = time.monotonic()
        try:
            resolutions = await self._write_on(lane, batch)
        finally:
            self.lanes.put_nowait(lane)
            self.metrics.batches_in_flight.dec()
        await self.settler.settle(resolutions)
        self.metrics.stage.processing.labels(STAGE).observe(time.monotonic() - started)
        log.info(
            "loader.batch.written",
            form_id=batch[0].bill.form_id,
            bills=len(batch),
            saved=sum(r.outcome is Outcome.SAVED for r in resolutions),
            already_exists=sum(r.outcome is Outcome.ALREADY_EXISTS for r in resolutions),
            dead_lettered=sum(r.outcome is Outcome.DEAD_LETTERED for r in resolutions),
            held=len(batch) - len(resolutions),
            lane=lane.index,
        )

    async def _write_on(self, lane: Lane, batch: list[Pending]) -> list[Resolution]:
        """The sink's resolutions; on back-pressure hold the rest and pause (KingdeeSink)."""
        with tracer().start_as_current_span(
            "kingdee BatchSave",
            kind=trace.SpanKind.CLIENT,
            links=batch_links([p.source.headers for p in batch]),
            attributes={"kingdee.form_id": batch[0].bill.form_id, "batch.size": len(batch)},
        ):
            try:
                return await self.sink.write(lane, batch)
            except KingdeeUnavailableError as exc:
                self.batches.hold(exc.held)
                self._pause(exc, exc.held[0])
                return exc.done

    # ---- back-pressure -----------------------------------------------------------------------

    def _pause(self, exc: KingdeeUnavailableError, sample: Pending) -> None:
        if self.outage.active:
            return
        self.consumer.pause(*self.consumer.assignment())

        async def probe() -> None:
            lane = await self.lanes.get()
            try:
                await self.sink.probe(lane, sample.bill)
            finally:
                self.lanes.put_nowait(lane)

        self.outage.begin(exc, probe)

    def _recovered(self) -> None:
        """Kingdee answered a probe: resume fetching and write every held bill again."""
        self.consumer.resume(*self.consumer.paused())
        if not self.guard.tripped:
            self.health.set_ready()
            self.metrics.stage.ready.labels(STAGE).set(1)
            for batch in self.batches.due(flush=True):
                self.dispatch(batch)
        self.wake.set()

    # ---- the loop ----------------------------------------------------------------------------

    async def _fetch(self, timeout_ms: int, max_records: int) -> None:
        fetched = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        for tp, records in fetched.items():
            for record in records:
                await self.add(tp, record)

    async def _step(self) -> None:
        room = self.s.max_pending_records - self.settler.pending
        if self.outage.active:
            # paused partitions fetch nothing, but polling keeps the group membership alive
            await self._fetch(500, max(room, 1))
            self.outage.raise_if_failed()
        elif room <= 0 or self.guard.tripped:
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=0.5)
        else:
            await self._fetch(max(int(self.s.batch_linger_seconds * 1000), 10), room)
            for batch in self.batches.due():
                self.dispatch(batch)
        await self.settler.commit()
        self.settler.update_lag()
        self.health.progress()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set or a writer task failed fatally.

        Raises:
            BaseException: the fatal error of a writer task or of the prober (credentials
                rejected, Kafka gone).
        """
        self.health.set_ready()
        self.metrics.stage.ready.labels(STAGE).set(1)
        try:
            while not stop.is_set() and self.fatal is None:
                await self._step()
            if self.fatal is None and not self.guard.tripped and not self.outage.active:
                for batch in self.batches.due(flush=True):
                    self.dispatch(batch)
        finally:
            await self.outage.aclose()
            if self.tasks:
                await asyncio.wait(set(self.tasks), timeout=self.s.retry.deadline_seconds + 10)
            await self.settler.commit()
            for lane in self.all_lanes:
                await lane.aclose()
        if self.fatal is not None:
            raise self.fatal
