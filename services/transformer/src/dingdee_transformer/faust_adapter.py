"""Every use of faust's, mode's and aiokafka's private names in the transformer, in one place.

The transformer runs faust's aiokafka consumer with whole-fetch delivery: faust delivers each
record through its conductor into a per-topic queue and a ``Stream``, about 150 µs a record (four
tasks per ``wait_first``, an event, sensors), more than the mapping. For ``approvals.raw`` the
consumer here instead hands every fetch, as one list of messages, to the
:class:`~dingdee_transformer.intake.FetchIntake` that the batch loop (``batches.py``) takes from;
faust's public batch path (an agent on ``stream.take_events``) measured slower (README). faust
still runs everything else: group membership and its assignor, table recovery and standbys, the
committed-offset seek after a rebalance, flow control and offset commits of the acked messages.

The private names used, below. The three libraries are pinned exactly in
``services/transformer/pyproject.toml``; ``tests/unit/transformer/test_faust_contract.py`` and
``tests/integration/test_transformer_faust_contract.py`` exercise each behaviour. Each name is
checked when the app is built (:func:`require_faust_internals`) or when the object that carries
it is created (``TransformerConsumer.__init__``, ``_ConsumerThread._create_worker_consumer``,
:func:`table_store`), and :func:`consumer_failure` raises :class:`FaustInternalsError` instead of
falling back to a default. What needs no private name lives beside this module:
:class:`~dingdee_transformer.positions.PositionedConsumer` (the consumer's base: each partition's
next offset after a seek, exact table ends) and :mod:`~dingdee_transformer.faust_checks` (the
checks and their error).

faust ``transport.consumer.Consumer`` (overridden by :class:`TransformerConsumer`):
  ``_drain_messages(fetcher)``: faust's delivery loop, which its ``Fetcher`` service runs; the
  override hands whole fetches to the intake and keeps each partition contiguous.
  ``_wait_next_records(timeout)`` → ``(records by TP, active TPs)``: one fetch, as faust's loop
  gets it. ``_to_message(tp, record)``: an aiokafka record as a faust ``Message``.
  ``_add_gap(tp, from, to)``: offsets that count as acked (records gone from the broker).
  ``_read_offset``, ``_buffered_partitions``: faust's per-partition read position and partitions
  with buffered records, which its loop filters on. ``_commit_every``, ``_n_acked``:
  ``broker_commit_every`` and the acks counted towards it.
faust ``ThreadDelegateConsumer._thread`` / ``_new_consumer_thread`` and ``drivers.aiokafka``
  ``AIOKafkaConsumerThread._consumer`` / ``_create_worker_consumer``: where faust builds and keeps
  its aiokafka consumer (the fetch wait, the watch). ``Producer._ensure_producer()``: faust's
  aiokafka producer, for ``send_batch`` (record batches; faust flushes it before every commit).
faust ``stores.memory.Store.data``: the dict behind the dedup table, read and written directly.
faust (public names, internal behaviour): ``app.transport`` replaced by
  :class:`TransformerTransport` before first use; ``app.tables.changelog_topics`` and
  ``app.monitor.stream_inbound_time``, which the stall detector (``verify_event_path``, run by
  ``verify_all_partitions_active``) reads and the intake stamps (:func:`stall_clock`).
mode ``Service._stopped``: whether the consumer / fetcher service stopped (the delivery loop's
  exit condition, as in faust's own).
aiokafka ``AIOKafkaConsumer``: ``_fetch_max_wait_ms`` (faust hard-codes 1.5 s; read by
  ``start()``), ``_coordinator._coordination_task`` and ``_fetcher._fetch_task`` (the background
  tasks whose end :func:`consumer_failure` reports).

Stopping the worker (:func:`stop_worker`) sends this process SIGTERM: mode's ``Worker`` has no
public stop besides its signal handlers (``_schedule_shutdown`` is private), and the SIGTERM path
is faust's clean shutdown: agents and tasks stop, the producer is flushed and acked offsets are
committed before ``__main__`` exits.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Mapping, MutableMapping
from time import monotonic
from typing import Any, cast

import faust
import faust.transport.consumer
import mode
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faust.stores.memory import Store as MemoryStore
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message, TableT
from mode import Service, ServiceT

from dingdee_common.settings import KafkaSettings
from dingdee_transformer.faust_checks import FaustInternalsError
from dingdee_transformer.faust_checks import internal as _internal
from dingdee_transformer.faust_checks import require as _require
from dingdee_transformer.intake import FetchIntake
from dingdee_transformer.positions import INTAKE_ATTR, KAFKA_SETTINGS_ATTR, PositionedConsumer

__all__ = [
    "FaustInternalsError",
    "FaustProducer",
    "TransformerConsumer",
    "TransformerTransport",
    "consumer_failure",
    "install_consumer",
    "require_faust_internals",
    "stall_clock",
    "stop_worker",
    "table_store",
]


_CONSUMER_STATE = ("_read_offset", "_buffered_partitions", "_commit_every", "_n_acked", "_stopped")
_AIOKAFKA_CONSUMER = ("_fetch_max_wait_ms", "_coordinator", "_fetcher")


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """faust's consumer thread, with the fetch wait of the shared Kafka settings."""

    def _create_worker_consumer(self, transport: faust_aiokafka.Transport) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        _require(consumer, _AIOKAFKA_CONSUMER, on_instance=True)
        # faust hard-codes 1500 ms: once some partitions are caught up, a partition with a
        # backlog waited up to that long for its next fetch (one fetch in flight per broker).
        kafka: KafkaSettings = getattr(self.app, KAFKA_SETTINGS_ATTR)
        consumer._fetch_max_wait_ms = kafka.fetch_max_wait_ms  # read when the consumer starts
        return consumer


class TransformerConsumer(PositionedConsumer):
    """faust's aiokafka consumer with whole-fetch, gap-free delivery and exact table ends."""

    # Where a partition was sought back to after its records jumped ahead of ``_next``.
    _reread: dict[TP, int]
    # What ended the delivery loop, if anything but a stop did.
    delivery_failure: BaseException | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _require(self, (*_CONSUMER_STATE, "_thread"), on_instance=True)
        self._reread = {}

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        """faust's delivery loop, with each fetch of the intake's topic handed over whole.

        Records of the intake's topic are delivered contiguously per partition from the offset of
        the last seek: a fetch that was in flight while the consumer sought back to the committed
        offsets is dropped and re-read (faust delivers it, counting the offsets between the new
        position and its records as a gap, i.e. as processed). Otherwise this is faust's loop
        (``Consumer._drain_messages``).
        """
        intake = cast("FetchIntake | None", getattr(self.app, INTAKE_ATTR, None))
        if intake is None:
            await super()._drain_messages(fetcher)
            return
        stopping: tuple[type[BaseException], ...] = (
            *self.consumer_stopped_errors,
            asyncio.CancelledError,
        )
        consumer_stopped = cast(Service, self)._stopped.is_set
        fetcher_stopped = cast(Service, fetcher)._stopped.is_set
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                await self.sleep(0)
                if self.should_stop:
                    continue
                records, active = await self._wait_next_records(1.0)
                if records is None or self.should_stop:
                    continue
                if not self.flow_active:
                    await self._seek_while_stopped()
                    continue
                await self._deliver(intake, records, active)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except stopping:
            if self.transport.app.should_stop:
                return
            raise
        except Exception as exc:
            # faust's fetcher service would log this and leave the worker up without records;
            # the worker's heartbeat reads it (consumer_failure) and stops the worker instead.
            self.delivery_failure = exc
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _deliver(
        self, intake: FetchIntake, records: Mapping[TP, list[Any]], active: set[TP] | None
    ) -> None:
        generation = self.app.consumer_generation_id
        for tp, batch in records.items():
            if not self.flow_active or self.app.consumer_generation_id != generation:
                return
            if active is not None and tp not in active and tp not in self._buffered_partitions:
                continue
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            if tp.topic == intake.topic:
                fresh = await self._contiguous(tp, batch)
                if fresh:
                    await self.wait_first(intake.put(fresh), self.suspend_flow.wait())
            else:
                for message in await self._fresh(tp, batch):
                    await self.wait_first(self.callback(message), self.suspend_flow.wait())

    async def _contiguous(self, tp: TP, records: list[Any]) -> list[Message]:
        """``records`` as faust messages, from the partition's next offset on, without holes.

        Records below the next offset were delivered already (a seek moved the position back).
        Records above it come from a fetch that raced a seek: they are dropped and the partition
        is sought back to the next offset, once; if the same jump comes again, the records in
        between are gone from the broker (retention) and the jump is accepted, as faust would.
        """
        expected = self._next.get(tp)
        fresh: list[Message] = []
        for record in records:
            offset = record.offset
            if expected is not None and offset != expected:
                if offset < expected:
                    continue
                if self._reread.get(tp) != expected:
                    self._reread[tp] = expected
                    self.log.info(
                        "%s: fetched %s, expected %s: reading again", tp, offset, expected
                    )
                    await self.seek(tp, expected)
                    return fresh  # the first `len(fresh)` records were contiguous
                self.log.warning("%s: records %s..%s are gone; going on", tp, expected, offset - 1)
                await self._add_gap(tp, expected, offset - 1)
            fresh.append(self._to_message(tp, record))
            expected = offset + 1
        if fresh:
            self._reread.pop(tp, None)
            self._next[tp] = fresh[-1].offset + 1
            await self._commit_if_due()
        return fresh

    async def _fresh(self, tp: TP, records: list[Any]) -> list[Message]:
        """``records`` as faust messages, filtered and counted the way faust's loop does.

        A record below the partition's read offset was already delivered (a seek moved the
        position back); offsets skipped in an acking topic (compaction, transaction markers)
        count as acked; every ``broker_commit_every`` acks, offsets are committed.
        """
        read_offset = self._read_offset
        acking = self.app.topics.acks_enabled_for(tp.topic)
        fresh: list[Message] = []
        for record in records:
            offset = record.offset
            last = read_offset[tp]
            if last is not None and offset < last:
                continue
            if acking and last and offset - last > 1:
                await self._add_gap(tp, last + 1, offset)
            await self._commit_if_due()
            fresh.append(self._to_message(tp, record))
            read_offset[tp] = offset
        return fresh

    async def _commit_if_due(self) -> None:
        """faust's ``broker_commit_every``: commit once that many records were acked."""
        if self._commit_every is not None and self._n_acked >= self._commit_every:
            self._n_acked = 0
            await self.commit()

    async def _seek_while_stopped(self) -> None:
        """What faust's ``getmany`` does when fetching while the flow is stopped."""
        try:
            await self.perform_seek()
        except Exception as exc:  # noqa: BLE001 - faust logs and goes on, as here
            self.log.warning(f"exception performing seek when flow not active {exc}")

    def verify_event_path(self, now: float, tp: TP) -> None:
        """faust's stall detector, for the partitions a stream reads.

        faust runs it for every assigned partition every 2.5 commit intervals and logs at ERROR
        when fetched records wait unprocessed. No stream reads a table's changelog: recovery
        reads it (and checks itself, ``verify_recovery_event_path``), then faust pauses it while
        this worker keeps writing to it, so its end moves on and its position does not, which
        the detector took for a stream that never started (~70 ERROR lines a minute, forever).
        """
        if tp.topic in self.app.tables.changelog_topics:
            return None
        return super().verify_event_path(now, tp)


class TransformerTransport(faust_aiokafka.Transport):
    Consumer = TransformerConsumer


def require_faust_internals(app: faust.App) -> None:
    """Fail at start-up if a private name this module relies on is gone (module docstring).

    Without this, a faust upgrade would start a worker that logs false stalls, or none, or whose
    watch never notices a dead consumer. Names that exist only on instances are checked where
    the instance is created.

    Raises:
        FaustInternalsError: names every missing one and the installed versions.
    """
    consumer = faust.transport.consumer.Consumer
    _require(consumer, ("_drain_messages", "_wait_next_records", "_to_message", "_add_gap"))
    _require(consumer, ("verify_event_path", "verify_all_partitions_active"))
    _require(consumer, _CONSUMER_STATE)
    _require(faust.transport.consumer.ThreadDelegateConsumer, ("_thread", "_new_consumer_thread"))
    _require(faust_aiokafka.AIOKafkaConsumerThread, ("_consumer", "_create_worker_consumer"))
    _require(faust_aiokafka.Producer, ("_ensure_producer",))
    _require(mode.Service, ("_stopped",))
    missing = []
    if not isinstance(getattr(app.tables, "changelog_topics", None), set):
        missing.append("faust.App.tables.changelog_topics")
    if not isinstance(getattr(app.monitor, "stream_inbound_time", None), dict):
        missing.append("faust.App.monitor.stream_inbound_time")
    if missing:
        raise FaustInternalsError(missing)


def consumer_failure(app: faust.App) -> str | None:
    """Why faust's aiokafka consumer stopped working, or ``None`` while it runs (or isn't up yet).

    Raises:
        FaustInternalsError: the path to aiokafka's background tasks is not there any more.
    """
    delivery = _internal(app.consumer, "delivery_failure")
    if delivery is not None:
        return f"record delivery ended: {delivery!r}"
    consumer = _internal(_internal(app.consumer, "_thread"), "_consumer")
    if consumer is None:
        return None  # the consumer thread has not started yet
    coordinator = _internal(consumer, "_coordinator")
    fetcher = _internal(consumer, "_fetcher")
    tasks: dict[str, Any] = {
        "group coordination": (
            None if coordinator is None else _internal(coordinator, "_coordination_task")
        ),
        "fetching": None if fetcher is None else _internal(fetcher, "_fetch_task"),
    }
    for what, task in tasks.items():
        if isinstance(task, asyncio.Future) and task.done():
            exc = None if task.cancelled() else task.exception()
            if app.consumer.should_stop:
                return None  # stopping: the tasks end on purpose
            return f"{what} ended: {exc!r}" if exc is not None else f"{what} ended"
    return None


def stall_clock(app: faust.App) -> Callable[[TP], None]:
    """What the intake calls when the loop takes a partition's fetch: the time a stream would
    stamp for faust's stall detector (it calls a partition stalled when fetched records wait
    untaken for ``stream_processing_timeout``)."""
    inbound = app.monitor.stream_inbound_time

    def taken(tp: TP) -> None:
        inbound[tp] = monotonic()

    return taken


def install_consumer(app: faust.App, kafka: KafkaSettings, intake: FetchIntake) -> None:
    """Make ``app``'s consumer a :class:`TransformerConsumer` that hands fetches to ``intake``.

    Before anything asks for the transport (``app.topic`` does): faust builds its consumer from
    the transport. The consumer finds the Kafka settings (its probes, the fetch wait) and the
    intake on the app.
    """
    setattr(app, KAFKA_SETTINGS_ATTR, kafka)
    setattr(app, INTAKE_ATTR, intake)
    app.transport = TransformerTransport(app.conf.broker_consumer, app)


def table_store(table: TableT[Any, Any]) -> MutableMapping[bytes, Any]:
    """The dict behind a ``store="memory://"`` table: what recovery fills and lookups read.

    The table's ``get`` and even the store's go through a raised KeyError for every key not seen
    yet (most of them), ~1.5 µs each; writes here skip faust's per-key changelog machinery (the
    batch loop writes the changelog record itself).
    """
    store = table.data
    if not isinstance(store, MemoryStore) or not isinstance(store.data, dict):
        raise FaustInternalsError([f"{type(store).__qualname__}.data (a dict)"])
    return cast("MutableMapping[bytes, Any]", store.data)


class FaustProducer:
    """faust's producer for the batch loop and the DLQ publisher: its aiokafka producer."""

    def __init__(self, app: faust.App) -> None:
        self._app = app

    def record_batches(self) -> AIOKafkaProducer:
        """faust's own aiokafka producer: the one faust flushes before every offset commit."""
        return cast(AIOKafkaProducer, cast(Any, self._app.producer)._ensure_producer())

    async def send_and_wait(self, topic: str, *args: Any, **kwargs: Any) -> object:
        """aiokafka's ``send_and_wait`` (what the DLQ publisher calls), on that producer."""
        return cast(object, await self.record_batches().send_and_wait(topic, *args, **kwargs))


def stop_worker() -> None:
    """Ask the faust worker to stop as on SIGTERM: agents and tasks stop, the producer is
    flushed, acked offsets are committed; ``__main__`` then exits."""
    os.kill(os.getpid(), signal.SIGTERM)
