"""The transformer's reader of reference topics and of its parked topic (issue #14).

A plain aiokafka consumer without a group reads every ``refdata.<source>`` topic and
``transformer.parked`` from the beginning (every replica holds every table), applies each record
to the :class:`RefStore` or the :class:`ParkingLot`, and keeps reading. ``start`` returns once
everything present was read (to the first empty poll: DESIGN §11, Tansu's end offsets), so the
batch loop maps nothing against a half-loaded table. ``first_refresh`` then waits until every
source a lookup reads has a completed refresh on its topic (the owner's :data:`MARKER_KEY` row):
on a fresh deploy the transformer would otherwise map before the loader's and the extractor's
first refresh and park every claim once. The wait is bounded (``DINGDEE_REFDATA__
FIRST_REFRESH_TIMEOUT_SECONDS``): past it the transformer maps anyway and logs a warning, since a
miss parks durably and loads when the refresh comes, while waiting for ever would turn one
missing publisher into a stopped pipeline. Then the lot retries what it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer

from dingdee_common.kafka.clients import make_consumer
from dingdee_common.kafka.reading import partitions_of
from dingdee_common.kafka.topics import Topics, provision
from dingdee_common.observability.logging import get_logger
from dingdee_common.refdata import decode_row
from dingdee_common.refpublish import MARKER_KEY
from dingdee_common.settings import KafkaSettings
from dingdee_transformer.metrics import TransformerMetrics
from dingdee_transformer.parking import ParkingLot
from dingdee_transformer.refstore import RefStore

__all__ = ["RefReader"]

log = get_logger(__name__)


class RefReader:
    def __init__(
        self,
        kafka: KafkaSettings,
        topics: Topics,
        store: RefStore,
        lot: ParkingLot,
        metrics: TransformerMetrics,
    ) -> None:
        self.kafka = kafka
        self.topics = topics
        self.store = store
        self.lot = lot
        self.metrics = metrics
        self.by_topic = {topics.refdata(s): s for s in store.config.sources}
        self.refreshed: dict[str, float] = {}  # source → epoch of its owner's last full refresh
        # the sources a lookup reads: mapping waits for a completed refresh of each
        self.needed = sorted(
            {lk.source for lk in store.config.lookups.values()}
            | {lk.via for lk in store.config.lookups.values() if lk.via is not None}
        )
        self._marker = asyncio.Event()  # set whenever a refresh marker arrives
        self.task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        """Provision the topics, read everything present, then keep reading in a task."""
        await provision(
            self.kafka, self.topics, extra=self.topics.refdata_specs(self.by_topic.values())
        )
        consumer = make_consumer(self.kafka, group_id=None, max_poll_records=5000)
        await consumer.start()
        self._consumer = consumer
        tps = await partitions_of(consumer, [*self.by_topic, self.topics.parked])
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        started, rows = time.monotonic(), 0
        while (n := await self._poll(consumer, 1000)) > 0:
            rows += n
        self._gauges()
        log.info(
            "transformer.refdata.loaded",
            records=rows,
            seconds=round(time.monotonic() - started, 3),
            parked=len(self.lot.entries),
            tables={s: len(t.rows) for s, t in self.store.tables.items()},
            unrefreshed=self.unrefreshed(),
        )
        self.task = asyncio.create_task(self._follow(consumer))

    def unrefreshed(self) -> list[str]:
        """The sources a lookup reads with no completed refresh seen yet."""
        return [s for s in self.needed if s not in self.refreshed]

    async def first_refresh(self, timeout: float, waiting: Callable[[str], None]) -> bool:
        """Wait (up to ``timeout`` s) for a completed refresh of every needed source, then let
        the parking lot hear changes and retry what it holds; True when none is missing.

        ``waiting`` hears the readiness reason while it waits ("waiting for the first refresh of
        refdata.X"); the wait is logged when it starts, every 30 s, and when it ends.
        """
        deadline = time.monotonic() + timeout
        started = time.monotonic()
        last_log = 0.0
        while (missing := self.unrefreshed()) and (left := deadline - time.monotonic()) > 0:
            topics = ", ".join(self.topics.refdata(s) for s in missing)
            waiting(f"waiting for the first refresh of {topics}")
            if time.monotonic() - last_log >= 30.0:
                last_log = time.monotonic()
                log.info("transformer.refdata.waiting", sources=missing, timeout_left=round(left))
            self._marker.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._marker.wait(), timeout=min(left, 30.0))
        missing = self.unrefreshed()
        waited = round(time.monotonic() - started, 3)
        if missing:
            log.warning(
                "transformer.refdata.first_refresh_timeout",
                sources=missing,
                waited_seconds=waited,
                detail="mapping without them: records that miss these sources park until "
                "their refresh (check the loader's or extractor's refresh logs)",
            )
        elif waited > 0.05:
            log.info("transformer.refdata.first_refresh_seen", waited_seconds=waited)
        self.store.listeners.append(self.lot.changed)
        self.lot.requeue_all()
        return not missing

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            await self._poll(consumer, 500)
            self._gauges()

    async def _poll(self, consumer: AIOKafkaConsumer, timeout_ms: int) -> int:
        batches = await consumer.getmany(timeout_ms=timeout_ms)
        n = 0
        for tp, records in batches.items():
            for record in records:
                n += 1
                if tp.topic == self.topics.parked:
                    self.lot.load(record.key, record.value, record.headers)
                else:
                    self._apply(self.by_topic[tp.topic], record.key, record.value)
        return n

    def _apply(self, source: str, raw_key: bytes | None, value: bytes | None) -> None:
        if raw_key is None:
            return
        key = raw_key.decode()
        try:
            row = decode_row(value) if value is not None else None
        except ValueError:
            log.warning("transformer.refdata.unreadable", source=source, key=key[:80])
            return
        if key == MARKER_KEY:
            if row is not None:
                self.refreshed[source] = float(row.fields.get("at") or time.time())
                self._marker.set()
            return
        self.store.apply(source, key, row)

    def _gauges(self) -> None:
        now = time.time()
        for source, table in self.store.tables.items():
            self.metrics.refdata_rows.labels(source).set(len(table.rows))
            last = max(self.refreshed.get(source, 0.0), table.changed_at)
            if last:
                self.metrics.refdata_age.labels(source).set(max(now - last, 0.0))
        for source in self.needed:
            self.metrics.refdata_unrefreshed.labels(source).set(source not in self.refreshed)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self._consumer is not None:
            await self._consumer.stop()
