"""The faust-streaming app: ``approvals.raw`` → :class:`Processor` → ``bills.ready`` or the DLQ.

faust's consumer hands whole fetches of ``approvals.raw`` to a :class:`FetchIntake`
(``consumer.py``); the batch loop here takes batches from it, maps them, publishes every bill and
dead letter of the batch, waits until the broker acknowledged all of them, records the emitted
fingerprints in the dedup table, and only then acks the batch's messages — faust commits acked
offsets only (at-least-once). A batch that cannot be published is never acked: the worker stops
instead, and the records are read again after the restart.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import faust
from aiokafka import AIOKafkaProducer
from faust.stores.memory import Store as MemoryStore
from faust.types import Message

from dingdee_common.codec import dumps
from dingdee_common.errors import ErrorClass, FatalError, TransientError
from dingdee_common.floodguard import FloodGuard
from dingdee_common.kafka.dlq import DeadLetterPublisher, SourceRecord
from dingdee_common.kafka.topics import Topics
from dingdee_common.observability.logging import get_logger
from dingdee_common.observability.server import Health
from dingdee_common.retry import retry_transient
from dingdee_common.settings import KafkaSettings
from dingdee_transformer.consumer import (
    INTAKE_ATTR,
    KAFKA_SETTINGS_ATTR,
    FetchIntake,
    TransformerTransport,
    consumer_failure,
    require_faust_hooks,
)
from dingdee_transformer.flowspec import CompiledFlow
from dingdee_transformer.metrics import STAGE, TransformerMetrics
from dingdee_transformer.outbox import Outbox
from dingdee_transformer.pipeline import DeadLetter, Emit, Outcome, Processor, Seen
from dingdee_transformer.settings import TransformerSettings

__all__ = ["TransformerApp", "consumer_failure", "faust_broker"]

log = get_logger(__name__)


def faust_broker(kafka: KafkaSettings) -> tuple[list[str], Any]:
    """faust broker URLs and credentials from the shared Kafka settings."""
    urls = [
        f"kafka://{host.strip()}" for host in kafka.bootstrap_servers.split(",") if host.strip()
    ]
    kwargs = kafka.client_kwargs()
    credentials: Any = None
    if kafka.sasl_mechanism:
        credentials = faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kwargs.get("sasl_plain_password"),
            mechanism=kafka.sasl_mechanism,
            ssl_context=kwargs.get("ssl_context"),
        )
    elif "ssl_context" in kwargs:
        credentials = faust.SSLCredentials(kwargs["ssl_context"])
    return urls, credentials


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
    outcomes: Sequence[Outcome]
    sent: list[tuple[Emit, asyncio.Future[Any], int]]  # bill, its batch's future, source partition
    started: float
    wait_seconds: float  # how long the loop waited for these records
    map_seconds: float


class _FaustSender:
    """Adapts faust's producer to the ``send_and_wait`` the shared DLQ publisher expects."""

    def __init__(self, app: faust.App) -> None:
        self._app = app

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> object:
        return await self._app.producer.send_and_wait(
            topic, key, value, partition, timestamp_ms, headers
        )


class TransformerApp:
    """Builds the faust app, its topics, the dedup table and batch loop; ``__main__`` runs it."""

    def __init__(
        self,
        settings: TransformerSettings,
        flows: Mapping[str, CompiledFlow],
        metrics: TransformerMetrics,
        health: Health,
    ) -> None:
        self.settings = settings
        self.topics = Topics(settings.kafka.topic_prefix)
        self.metrics = metrics
        self.health = health
        self.guard = FloodGuard(settings.flood_guard)
        self.processor = Processor(
            flows,
            metrics,
            source_topic=self.topics.approvals_raw,
            bills_topic=self.topics.bills_ready,
            group=settings.group_id,
        )
        self.app = self._make_app()
        self.dlq = DeadLetterPublisher(_FaustSender(self.app), self.topics, STAGE)
        self.stopped = asyncio.Event()
        self.fatal: BaseException | None = None
        # Fingerprints emitted but not yet remembered in the table (their batch is in flight).
        self._unsettled: dict[str, Seen] = {}

    def _make_app(self) -> faust.App:
        s = self.settings
        urls, credentials = faust_broker(s.kafka)
        app = faust.App(
            s.group_id,
            broker=urls,
            broker_credentials=credentials,
            web_enabled=False,
            autodiscover=False,
            topic_partitions=s.kafka.partitions,
            topic_replication_factor=s.kafka.replication_factor,
            topic_disable_leader=True,
            producer_acks=-1,
            # A batch sends hundreds of bills and changelog records at once: let them travel in
            # few large produce requests (faust's default batch is 16 KiB, ~6 bills).
            producer_max_batch_size=1 << 20,
            producer_max_request_size=4 << 20,
            consumer_auto_offset_reset="earliest",
            broker_commit_interval=1.0,
            broker_session_timeout=15.0,
            broker_heartbeat_interval=3.0,
            stream_processing_timeout=s.stall_timeout_seconds,
            broker_commit_livelock_soft_timeout=s.stall_timeout_seconds,
            # Acks are ours (by hand, per batch): a batch halted by the flood guard or a failed
            # publish is never acked; waiting for "all acked" would block shutdown and rebalances.
            stream_wait_empty=False,
            table_cleanup_interval=3600.0,
            table_standby_replicas=s.standby_replicas,
            store="memory://",
        )
        setattr(app, KAFKA_SETTINGS_ATTR, s.kafka)
        # Before anything asks for the transport (app.topic does): the consumer must be ours.
        app.transport = TransformerTransport(app.conf.broker_consumer, app)
        source = app.topic(
            self.topics.approvals_raw, key_serializer="raw", value_serializer="raw", internal=False
        )
        # Subscribed like an agent's topic; its records reach the batch loop through the intake.
        app.topics.add(source)
        self.intake = FetchIntake(app, self.topics.approvals_raw)
        setattr(app, INTAKE_ATTR, self.intake)
        self._changelog = f"{s.kafka.topic_prefix}transformer.seen-changelog"
        changelog = app.topic(
            self._changelog,
            key_serializer="raw",
            value_serializer="json",
            partitions=s.kafka.partitions,
            internal=True,
        )
        # The changelog is written by hand (``_remember``), after the bill's ack and outside any
        # event, to the partition of the approvals.raw record: the one whose owner looks the
        # instance up next. use_partitioner only tells faust not to expect an event there.
        self.seen_table = app.Table(
            "seen",
            default=None,
            changelog_topic=changelog,
            use_partitioner=True,
            key_type=bytes,
            value_type=None,
            partitions=s.kafka.partitions,
        )
        require_faust_hooks(app)
        app.task(self._run_batches, traced=False)
        app.timer(interval=5.0)(self._heartbeat)
        app.on_rebalance_complete.connect(self._on_assigned)
        return app

    async def _on_assigned(self, *_: Any, **__: Any) -> None:
        log.info(
            "transformer.partitions.assigned",
            active=sorted(
                f"{tp.topic}:{tp.partition}" for tp in self.app.assignor.assigned_actives()
            ),
            standby=sorted(
                f"{tp.topic}:{tp.partition}" for tp in self.app.assignor.assigned_standbys()
            ),
        )
        if not self.guard.tripped:
            self.health.set_ready()
            self.metrics.stage.ready.labels(STAGE).set(1)

    async def _heartbeat(self) -> None:
        """Liveness while idle: the event loop turns *and* the Kafka consumer still runs.

        aiokafka's group coordination and fetching run as tasks on faust's consumer thread; when
        one dies (faust's assignor rejecting an assignment, say) faust logs it and carries on
        with a consumer that never fetches again. A worker in that state is stopped here so the
        orchestrator restarts it, instead of reporting itself alive with records piling up.
        """
        failure = consumer_failure(self.app)
        if failure is not None:
            self._fail(RuntimeError(f"Kafka consumer stopped: {failure}"))
            return
        if not self.guard.tripped:
            self.health.progress()

    def _seen(self, pid: str) -> Seen | None:
        # The dict of the memory store (store="memory://") that ``_remember`` writes to and
        # recovery fills, read directly: the table's ``get`` and even the store's go through a
        # raised KeyError for every instance not seen yet (most of them), ~1.5 µs each.
        store = cast("MemoryStore[bytes, Any]", self.seen_table.data)
        return Seen.from_value(store.data.get(pid.encode()))

    async def _run_batches(self) -> None:
        """Map batch N+1 while the broker acknowledges batch N (two batches in flight at most).

        Batches are settled (bills confirmed, fingerprints remembered, offsets acked) strictly
        in order; a batch whose bills cannot be published stops the worker before anything after
        it is acked.
        """
        s = self.settings
        in_flight: _Dispatched | None = None
        try:
            while True:
                if in_flight is not None and not self.intake.ready():
                    await self._settle(in_flight)  # nothing to overlap with: finish it now
                    in_flight = None
                waiting = time.perf_counter()
                messages = await self.intake.take(s.batch_max_records, s.batch_linger_seconds)
                dispatched = await self._dispatch(messages, time.perf_counter() - waiting)
                if in_flight is not None:
                    await self._settle(in_flight)
                in_flight = dispatched
                if self.guard.tripped:
                    await self._settle(in_flight)
                    in_flight = None
                    await self._halt()
        except Exception as exc:  # noqa: BLE001 - a bug or a fatal error must stop the worker
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        """Stop the worker without acking the current batch; ``__main__`` exits non-zero.

        A restarted pod reads the unacked records again, so nothing is lost; restarting just the
        loop would instead go on with the next records and leave a gap behind.
        """
        self.fatal = exc
        self.health.set_not_ready(f"fatal: {type(exc).__name__}")
        self.metrics.stage.ready.labels(STAGE).set(0)
        log.error("transformer.agent.failed", error_type=type(exc).__name__, error=str(exc)[:500])
        os.kill(os.getpid(), signal.SIGTERM)

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
        changelog = await Outbox.open(self._producer(), self._changelog)
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
                self.metrics.stage.records_out.labels(STAGE, flow, "bill").inc(n)
        ack = self.app.consumer.ack
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

    def _observe_lag(self, messages: Sequence[Message], outcomes: Sequence[Outcome]) -> None:
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
            high = self.app.consumer.highwater(tp)
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

    def _process_all(self, records: Sequence[SourceRecord]) -> list[Outcome]:
        unsettled = self._unsettled

        def seen(pid: str) -> Seen | None:
            return unsettled.get(pid) or self._seen(pid)

        outcomes: list[Outcome] = []
        for record in records:
            if self.guard.tripped:
                break
            outcome = self.processor.process(record, seen)
            if isinstance(outcome, Emit):
                unsettled[outcome.process_instance_id] = outcome.seen
            outcomes.append(outcome)
            self.guard.record(isinstance(outcome, DeadLetter))
        return outcomes

    def _producer(self) -> AIOKafkaProducer:
        """faust's own aiokafka producer: the one faust flushes before every offset commit."""
        return cast(AIOKafkaProducer, cast(Any, self.app.producer)._ensure_producer())

    async def _send_all(
        self, records: Sequence[SourceRecord], outcomes: Sequence[Outcome]
    ) -> list[tuple[Emit, asyncio.Future[Any], int]]:
        """Send the batch's bills (not yet confirmed) and dead letters (confirmed), count skips."""
        bills = await Outbox.open(self._producer(), self.topics.bills_ready)
        slots: list[tuple[Emit, int, int]] = []
        skipped: Counter[str] = Counter()
        try:
            for record, outcome in zip(records[: len(outcomes)], outcomes, strict=True):
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
                self.metrics.stage.records_out.labels(STAGE, flow, "skipped").inc(n)
        futures = await bills.send()
        return [(emit, futures[slot], partition) for emit, slot, partition in slots]

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
        self.seen_table.data[key] = value
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
                await self.app.producer.send_and_wait(
                    self.topics.bills_ready, emit.key, emit.value, None, None, emit.headers
                )
            except Exception as exc:
                raise TransientError(f"bills.ready send failed: {type(exc).__name__}") from exc

        try:
            await retry_transient(resend, self.settings.retry)
        except TransientError as exc:
            raise FatalError(
                f"could not publish to {self.topics.bills_ready}: {exc}; check the broker and "
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
        self._count(outcome.flow, "dead_letter")

    def _count(self, flow: str, outcome: str) -> None:
        self.metrics.stage.records_out.labels(STAGE, flow, outcome).inc()
