"""The faust-streaming app: ``approvals.raw`` → :class:`Processor` → ``bills.ready`` or the DLQ.

faust's consumer hands whole fetches of ``approvals.raw`` to a :class:`FetchIntake`
(``intake.py``, fed by the consumer in ``faust_adapter.py``); the :class:`BatchLoop`
(``batches.py``) takes batches from it, maps, publishes and settles them. This module builds the
faust app, its topics and dedup table around them, and watches the consumer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import faust
from faust.types import TP, Message

from dingdee_common.floodguard import FloodGuard
from dingdee_common.kafka.dlq import DeadLetterPublisher
from dingdee_common.kafka.topics import Topics
from dingdee_common.observability.logging import get_logger
from dingdee_common.observability.server import Health
from dingdee_common.refdata import ReferenceConfig
from dingdee_common.settings import KafkaSettings
from dingdee_transformer.batches import BatchLoop, Stage
from dingdee_transformer.faust_adapter import (
    FaustInternalsError,
    FaustProducer,
    consumer_failure,
    install_consumer,
    require_faust_internals,
    stall_clock,
    stop_worker,
    table_store,
)
from dingdee_transformer.flowspec import CompiledFlow
from dingdee_transformer.intake import FetchIntake
from dingdee_transformer.metrics import STAGE, TransformerMetrics
from dingdee_transformer.parking import ParkingLot
from dingdee_transformer.pipeline import Processor
from dingdee_transformer.refstore import RefStore
from dingdee_transformer.refsync import RefReader
from dingdee_transformer.settings import TransformerSettings

__all__ = ["TransformerApp", "consumer_failure", "faust_app", "faust_broker"]

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


def faust_app(s: TransformerSettings) -> faust.App:
    """The faust app as the transformer configures it (no topics, tables or tasks yet)."""
    urls, credentials = faust_broker(s.kafka)
    return faust.App(
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


class _ConsumerOffsets:
    """faust's consumer as the batch loop's :class:`~dingdee_transformer.batches.Offsets`,
    looked up when used: faust creates its consumer when the worker starts."""

    def __init__(self, app: faust.App) -> None:
        self._app = app

    def ack(self, message: Message) -> bool:
        return self._app.consumer.ack(message)

    def highwater(self, tp: TP) -> int | None:
        return self._app.consumer.highwater(tp)


class _Sends:
    """faust's aiokafka producer as the parking lot's sender (looked up when used)."""

    def __init__(self, producer: FaustProducer) -> None:
        self._producer = producer

    async def send(self, topic: str, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = await self._producer.record_batches().send(
            topic, *args, **kwargs
        )
        return future

    async def send_and_wait(self, topic: str, *args: Any, **kwargs: Any) -> object:
        return await self._producer.send_and_wait(topic, *args, **kwargs)


class TransformerApp:
    """Builds the faust app, its topics, the dedup table and batch loop; ``__main__`` runs it."""

    def __init__(
        self,
        settings: TransformerSettings,
        flows: Mapping[str, CompiledFlow],
        metrics: TransformerMetrics,
        health: Health,
        store: RefStore | None = None,
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
        producer = FaustProducer(self.app)
        self.dlq = DeadLetterPublisher(producer, self.topics, STAGE)
        self.store = store or RefStore(ReferenceConfig())
        self.parking = ParkingLot(
            settings.parking,
            _Sends(producer),
            self.dlq,
            metrics,
            (self.topics.approvals_raw, self.topics.parked, self.topics.refdata_requests),
            owns=self._owns,
        )
        # the series exist at 0 before the first miss or park: a quiet source shows on the panels
        for source in self.store.config.sources:
            metrics.refdata_misses.labels(source)
            metrics.parked.labels(source).set(0)
        self.parking.metrics_sources |= set(self.store.config.sources)
        self.refdata = RefReader(settings.kafka, self.topics, self.store, self.parking, metrics)
        self.batches = BatchLoop(
            settings,
            self.processor,
            Stage(metrics, health, self.guard, self.dlq),
            io=(self.intake, _ConsumerOffsets(self.app), producer),
            seen=table_store(self.seen_table),
            topics=(self.topics.bills_ready, self._changelog),
            parking=self.parking,
        )
        self.stopped = self.batches.stopped
        self.fatal: BaseException | None = None
        self._assigned = False  # faust assigned this worker its partitions
        self._refs_ready = False  # tables read and the first refreshes seen (or waited out)

    def _make_app(self) -> faust.App:
        s = self.settings
        app = faust_app(s)
        require_faust_internals(app)
        self.intake = FetchIntake(
            self.topics.approvals_raw,
            generation=lambda: app.consumer_generation_id,
            taken=stall_clock(app),
        )
        install_consumer(app, s.kafka, self.intake)
        source = app.topic(
            self.topics.approvals_raw, key_serializer="raw", value_serializer="raw", internal=False
        )
        # Subscribed like an agent's topic; its records reach the batch loop through the intake.
        app.topics.add(source)
        self._changelog = f"{s.kafka.topic_prefix}transformer.seen-changelog"
        changelog = app.topic(
            self._changelog,
            key_serializer="raw",
            value_serializer="json",
            partitions=s.kafka.partitions,
            internal=True,
        )
        # The changelog is written by hand (``BatchLoop._remember``), after the bill's ack and
        # outside any event, to the partition of the approvals.raw record: the one whose owner
        # looks the instance up next. use_partitioner only tells faust not to expect an event there.
        self.seen_table = app.Table(
            "seen",
            default=None,
            changelog_topic=changelog,
            use_partitioner=True,
            key_type=bytes,
            value_type=None,
            partitions=s.kafka.partitions,
        )
        app.task(self._run_batches, traced=False)
        app.timer(interval=5.0)(self._heartbeat)
        app.on_rebalance_complete.connect(self._on_assigned)
        return app

    async def _run_batches(self) -> None:
        # reference tables and parked records first: nothing is mapped against a half-read table
        try:
            await self.refdata.start()
            await self.refdata.first_refresh(
                self.settings.refdata.first_refresh_timeout_seconds, self._waiting
            )
        except Exception as exc:  # noqa: BLE001 - the worker stops and is restarted
            self._fail(exc)
            return
        self._refs_ready = True
        self._set_ready()
        lot = asyncio.create_task(self.parking.run())
        try:
            await self.batches.run(self._fail)
        finally:
            lot.cancel()
            await self.refdata.stop()

    def _owns(self, partition: int) -> bool:
        """Whether this worker maps ``approvals.raw`` partition ``partition`` (parked retries)."""
        return TP(self.topics.approvals_raw, partition) in self.app.assignor.assigned_actives()

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
        self._assigned = True
        self.parking.requeue_all()  # records parked by the previous owner of a partition
        self._set_ready()

    def _set_ready(self) -> None:
        """Ready once partitions are assigned and the live sources had their first refresh."""
        if self._assigned and self._refs_ready and not self.guard.tripped and self.fatal is None:
            self.health.set_ready()
            self.metrics.stage.ready.labels(STAGE).set(1)

    def _waiting(self, reason: str) -> None:
        self.health.set_not_ready(reason)
        self.metrics.stage.ready.labels(STAGE).set(0)

    async def _heartbeat(self) -> None:
        """Liveness while idle: the event loop turns *and* the Kafka consumer still runs.

        aiokafka's group coordination and fetching run as tasks on faust's consumer thread; when
        one dies (faust's assignor rejecting an assignment, say) faust logs it and carries on
        with a consumer that never fetches again. A worker in that state is stopped here so the
        orchestrator restarts it, instead of reporting itself alive with records piling up.
        """
        try:
            failure = consumer_failure(self.app)
        except FaustInternalsError as exc:
            self._fail(exc)
            return
        if failure is not None:
            self._fail(RuntimeError(f"Kafka consumer stopped: {failure}"))
            return
        if not self.guard.tripped:
            self.health.progress()

    def _fail(self, exc: BaseException) -> None:
        """Stop the worker without acking the current batch; ``__main__`` exits non-zero.

        A restarted pod reads the unacked records again, so nothing is lost; restarting just the
        loop would instead go on with the next records and leave a gap behind.
        """
        self.fatal = exc
        self.health.set_not_ready(f"fatal: {type(exc).__name__}")
        self.metrics.stage.ready.labels(STAGE).set(0)
        log.error("transformer.agent.failed", error_type=type(exc).__name__, error=str(exc)[:500])
        stop_worker()
