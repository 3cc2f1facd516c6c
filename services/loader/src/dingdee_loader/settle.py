"""The settler: publishes each bill's outcome (result, dead letter), resolves it, commits offsets.

A bill counts as resolved only once its dead letter and its result were acked by Kafka; offsets
are committed only up to the first bill without a resolution (``OffsetTracker``). The flood guard
hears every final outcome; bills Kingdee could not take (back-pressure) never come here.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from dingdee_common import codec
from dingdee_common.contracts.v1 import BillOutcome, BillReady, BillResult, utcnow
from dingdee_common.errors import DingdeeError, ErrorClass, TransientError
from dingdee_common.floodguard import FloodGuard
from dingdee_common.kafka import headers as hdr
from dingdee_common.kafka.clients import until_broker_answers
from dingdee_common.kafka.dlq import DeadLetterPublisher, SourceRecord
from dingdee_common.kafka.protocols import BatchConsumer, Producer
from dingdee_common.kafka.topics import Topics
from dingdee_common.observability.logging import get_logger
from dingdee_common.observability.server import Health
from dingdee_common.outcomes import Outcome
from dingdee_common.settings import RetrySettings
from dingdee_loader.batcher import OffsetTracker, Pending, Resolution
from dingdee_loader.metrics import STAGE, LoaderMetrics

__all__ = ["Settler"]

log = get_logger(__name__)


def _row_label(r: Resolution) -> str:
    """``dingdee_loader_rows_total{outcome}``: a dead letter as ``rejected`` or ``exhausted``."""
    if r.outcome is not Outcome.DEAD_LETTERED:
        return r.outcome.value
    return ErrorClass.EXHAUSTED.value if r.error_class is ErrorClass.EXHAUSTED else "rejected"


class Settler:
    """Offsets in flight per partition, and the publishing of every bill's final outcome."""

    def __init__(
        self,
        consumer: BatchConsumer,
        producer: Producer,
        topics: Topics,
        metrics: LoaderMetrics,
        guard: FloodGuard,
        health: Health,
        kafka_policy: RetrySettings | None = None,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.topics = topics
        self.metrics = metrics
        self.guard = guard
        self.health = health
        self.dlq = DeadLetterPublisher(producer, topics, STAGE)
        self.trackers: dict[TopicPartition, OffsetTracker] = {}
        self.pending = 0
        self.committed: dict[TopicPartition, int] = {}
        self.open_since: dict[tuple[TopicPartition, int], float] = {}
        self.dlq_lock = asyncio.Lock()
        # the backoff while the broker does not acknowledge (no budget: back-pressure)
        self.kafka_policy = kafka_policy or RetrySettings(max_backoff_seconds=5.0)
        # called with each saved (or already existing) bill: the refresher publishes base data
        self.saved_hooks: list[Callable[[BillReady], Awaitable[None]]] = []

    # ---- bookkeeping -------------------------------------------------------------------------

    def track(self, tp: TopicPartition, offset: int) -> bool:
        """Start tracking a consumed offset; False if it is already tracked (a re-fetch)."""
        return self.trackers.setdefault(tp, OffsetTracker()).add(offset)

    def opened(self, tp: TopicPartition, offset: int, timestamp: float) -> None:
        """A bill now waits for Kingdee (counts towards ``max_pending_records`` and the lag)."""
        self.pending += 1
        self.open_since[(tp, offset)] = timestamp

    def forget(self, partitions: set[TopicPartition], dropped: list[Pending]) -> None:
        """Partitions revoked: drop their trackers and the bills of theirs still held."""
        for tp in partitions:
            self.trackers.pop(tp, None)
        for p in dropped:
            self.pending -= 1
            self.open_since.pop(
                (TopicPartition(p.source.topic, p.source.partition), p.source.offset), None
            )

    # ---- outcomes ----------------------------------------------------------------------------

    async def poison(self, tp: TopicPartition, source: SourceRecord, exc: DingdeeError) -> None:
        """An undecodable record: dead letter at once, then resolved."""
        await self._until_acked(
            "a dead letter",
            lambda: self.dlq.publish(
                source, error_class=ErrorClass.POISON, error_type=exc.error_type, message=str(exc)
            ),
        )
        flow = hdr.get(source.headers, hdr.FLOW) or "unknown"
        self.metrics.stage.dead_letters.labels(STAGE, flow, ErrorClass.POISON.value).inc()
        log.warning("loader.record.poison", offset=source.offset, error=str(exc))
        self.trackers[tp].resolve(source.offset)
        self._guard(ErrorClass.POISON)

    def _result(self, r: Resolution) -> BillResult:
        p = r.pending
        return BillResult(
            flow=p.bill.flow,
            bill_key=p.bill.bill_key,
            form_id=p.bill.form_id,
            outcome=BillOutcome.of(r.outcome),
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

    async def settle(self, resolutions: list[Resolution]) -> None:
        """Dead letters one by one (the flood guard may stop them), then the other results.

        The flood guard hears of the batch's other outcomes first: dead letters wait for one
        another (one at a time), so after a restart, with many batches settling together,
        counting only the dead letters as they go out made 6 % of rejected rows look like 44 of
        50 and tripped it.
        """
        done = [r for r in resolutions if r.outcome is not Outcome.DEAD_LETTERED]
        for _ in done:
            self._guard(None)
        for r in resolutions:
            if r.outcome is not Outcome.DEAD_LETTERED or r.error_class is None:
                continue
            async with self.dlq_lock:  # one at a time, so the guard stops at its exact limit
                if self.guard.tripped:
                    return  # the rest stays uncommitted: redelivered after an operator restart
                await self._dead_letter(r, r.error_class)
        unacked = list(done)
        await self._until_acked("the bills' results", lambda: self._send_results(unacked))
        for r in done:
            self._resolved(r)
            for hook in self.saved_hooks:
                await self._until_acked(
                    "a saved bill's reference row", functools.partial(hook, r.pending.bill)
                )

    async def _send_results(self, unacked: list[Resolution]) -> None:
        """Send the results in ``unacked``; those acknowledged leave it, so a retry after a
        broker error sends only the rest (a result is written twice only when its own
        acknowledgement was lost)."""
        sent: list[tuple[Resolution, asyncio.Future[object]]] = []
        try:
            for r in unacked:
                sent.append((r, await self._send_result(r)))  # noqa: PERF401 - kept on a raise
        finally:
            outcomes = await asyncio.gather(*(ack for _, ack in sent), return_exceptions=True)
            for (r, _), outcome in zip(sent, outcomes, strict=True):
                if not isinstance(outcome, BaseException):
                    unacked.remove(r)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _until_acked(self, what: str, send: Callable[[], Awaitable[None]]) -> None:
        """Run ``send`` until Kafka acknowledges it: a broker that does not answer (frozen,
        unreachable, electing) is back-pressure, never a crash or a dead letter.

        A send repeated after a timeout may have been written once already: ``bills.result``
        and the DLQ are at-least-once (as after any restart) and keyed by the bill, while the
        bill itself was saved once. The bills stay unresolved, so their offsets stay uncommitted.
        """

        reason: str | None = None

        def waiting(exc: TransientError, attempt: int, delay: float) -> None:
            nonlocal reason
            reason = f"{exc.message}; bills held, try {attempt + 1} in {delay:.1f}s"
            self.health.set_not_ready(reason)
            self.health.progress()  # waiting on purpose is progress: liveness must hold
            log.warning(
                "loader.kafka.unavailable",
                attempt=attempt,
                next_in=round(delay, 3),
                error=exc.message,
            )

        await until_broker_answers(send, what, self.kafka_policy, waiting)
        if reason is not None:
            log.info("loader.kafka.recovered", what=what)
            if self.health.not_ready_reason == reason:  # nothing else made it not ready since
                self.health.set_ready()

    async def _dead_letter(self, r: Resolution, error_class: ErrorClass) -> None:
        async def result() -> None:
            await (await self._send_result(r))

        # one at a time: a result refused after its dead letter was written never repeats it
        await self._until_acked(
            "a dead letter",
            lambda: self.dlq.publish(
                r.pending.source,
                error_class=error_class,
                error_type=r.error_type or "kingdee_error",
                message=r.message or "",
                attempts=max(r.pending.attempts, 1),
            ),
        )
        await self._until_acked("a dead letter's result", result)
        log.warning(
            "loader.bill.dead_lettered",
            bill_key=r.pending.bill.bill_key,
            error_class=error_class.value,
            error_type=r.error_type,
            reason=(r.message or "")[:300],
            attempts=max(r.pending.attempts, 1),
        )
        self._resolved(r)
        self._guard(error_class)

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
        self.metrics.stage.records_out.labels(STAGE, flow, r.outcome.value).inc()
        self.metrics.rows.labels(flow, _row_label(r)).inc()
        if r.error_class is not None:
            self.metrics.stage.dead_letters.labels(STAGE, flow, r.error_class.value).inc()

    def _guard(self, outcome: ErrorClass | None) -> None:
        if self.guard.record(outcome):
            reason = self.guard.tripped_reason or "flood guard tripped"
            log.error("loader.floodguard.tripped", reason=reason)
            self.metrics.stage.flood_guard_tripped.labels(STAGE).set(1)
            self.metrics.stage.ready.labels(STAGE).set(0)
            self.health.set_not_ready(f"flood guard: {reason}")

    # ---- offsets -----------------------------------------------------------------------------

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

    def update_lag(self) -> None:
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
