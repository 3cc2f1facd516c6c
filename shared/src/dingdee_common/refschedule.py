"""When the owner of reference sources reads each one (issue #14): the loader's Kingdee refresher
and the extractor's contact sync share this schedule and its loop.

Every source is read at start, then every ``refresh_interval()`` (its ``refresh_seconds``). A
request on ``refdata.requests`` (a lookup miss in the transformer) brings a read forward, but no
sooner than ``min_interval_seconds`` after the last read started, so a thousand misses of one new
hire make one read. An owner that fails a read tries again when it says (:meth:`failed`).
:meth:`RefreshSchedule.run` provisions the topics, listens to the requests and calls the owner's
``tick`` whenever a source is due or something woke the loop, until ``stop``. What is published
goes through :mod:`dingdee_common.refpublish`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping

from aiokafka import AIOKafkaConsumer

from dingdee_common.kafka.clients import make_consumer
from dingdee_common.kafka.topics import Topics, provision
from dingdee_common.refdata import RefRequest, SourceSpec, decode_request
from dingdee_common.settings import KafkaSettings

__all__ = ["RefreshSchedule"]

MIN_WAIT_SECONDS = 0.05  # the loop never spins faster than this


class RefreshSchedule:
    """The next read of each source (``due``, monotonic seconds) and the loop that runs them."""

    def __init__(
        self,
        kafka: KafkaSettings,
        sources: Mapping[str, SourceSpec],
        *,
        group_id: str,
        min_interval_seconds: float,
    ) -> None:
        self.kafka = kafka
        self.topics = Topics(kafka.topic_prefix)
        self.sources = dict(sources)
        self.group_id = group_id  # of the consumer of refdata.requests
        self.min_interval = min_interval_seconds
        self.due = dict.fromkeys(self.sources, 0.0)  # when each source is read next
        self.last = dict.fromkeys(self.sources, -1e9)  # when its last read started
        self.wake = asyncio.Event()

    def request(self, name: str) -> None:
        """Read ``name`` soon: now, or when its minimum interval since the last read ends.
        A source this owner does not have is ignored."""
        if name not in self.due:
            return
        soonest = self.last[name] + self.min_interval
        self.due[name] = min(self.due[name], max(time.monotonic(), soonest))
        self.wake.set()

    def read_now(self, name: str) -> None:
        """Read ``name`` at once, minimum interval or not (a change DingTalk announced)."""
        self.due[name] = time.monotonic()
        self.wake.set()

    def is_due(self, name: str) -> bool:
        return self.due[name] <= time.monotonic()

    def now_due(self) -> list[str]:
        """The sources whose read is due now."""
        now = time.monotonic()
        return [name for name, at in self.due.items() if at <= now]

    def begin(self, name: str) -> float:
        """A read of ``name`` starts now; the next is due one refresh interval later. Returns
        the start (monotonic)."""
        started = time.monotonic()
        self.last[name] = started
        self.due[name] = started + self.sources[name].refresh_interval()
        return started

    def failed(self, name: str, started: float, retry_seconds: float) -> None:
        """The read of ``name`` begun at ``started`` failed: read again ``retry_seconds`` after."""
        self.due[name] = started + retry_seconds

    async def run(
        self,
        stop: asyncio.Event,
        tick: Callable[[], Awaitable[None]],
        on_request: Callable[[RefRequest], None],
        *,
        before: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Until ``stop``: ``tick()``, then sleep until the next read is due or ``wake`` is set.

        ``on_request`` hears every request on ``refdata.requests``; ``before`` runs once the
        topics exist, before the first tick. Nothing runs when there are no sources.
        """
        if not self.sources:
            return
        await provision(self.kafka, self.topics, extra=self.topics.refdata_specs(self.sources))
        requests = make_consumer(self.kafka, self.topics.refdata_requests, group_id=self.group_id)
        listen: asyncio.Task[None] | None = None
        try:
            if before is not None:
                await before()
            listen = asyncio.create_task(_listen(requests, on_request))
            while not stop.is_set():
                await tick()
                await self._sleep()
        finally:
            if listen is not None:
                listen.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listen
            await requests.stop()

    async def _sleep(self) -> None:
        self.wake.clear()
        wait = max(MIN_WAIT_SECONDS, min(self.due.values()) - time.monotonic())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=wait)


async def _listen(consumer: AIOKafkaConsumer, on_request: Callable[[RefRequest], None]) -> None:
    """Every request on ``refdata.requests`` to ``on_request`` (one that does not decode is
    skipped), committed after each batch.

    The consumer starts here, not before the first refresh: a group consumer's start waits for
    its group (~15 s on Tansu), and the transformer waits for that first refresh (issue #14).
    """
    await consumer.start()
    while True:
        batches = await consumer.getmany(timeout_ms=1000)
        for records in batches.values():
            for record in records:
                with contextlib.suppress(ValueError):
                    on_request(decode_request(record.value or b""))
        if batches:
            await consumer.commit()
