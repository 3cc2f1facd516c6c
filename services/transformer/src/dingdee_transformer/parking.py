"""Parked records: an approval whose only problem is a missing reference row waits (issue #14).

Parking writes the ``approvals.raw`` record, byte for byte, to the compacted
``transformer.parked`` topic under its key (the process instance id), with ``dingdee-parked-*``
headers saying what it waits for and since when, and waits for the broker's ack before the batch
loop acks the original: the record survives a SIGKILL of any service, and the records behind it
in its partition go on. The lot is rebuilt from the topic at start (``load``). When a source the
record waits for changes, the record is put back on ``approvals.raw`` (like a replay) and mapped
again: it becomes a bill (the lot writes a tombstone), or parks again with its first parking
time. Past ``DINGDEE_PARKING__LIMIT_SECONDS`` it is dead-lettered with the lookup's reason. A
miss also asks the source's owner for a refresh on ``refdata.requests``, at most once per
(source, key) per ``DINGDEE_PARKING__REQUEST_INTERVAL_SECONDS``.

Memory is bounded: at most ``DINGDEE_PARKING__MAX_RECORDS`` entries, each the record's bytes
plus a few fields; past it a new miss is dead-lettered at once with the same reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from dingdee_common.errors import ErrorClass
from dingdee_common.kafka import headers as hdr
from dingdee_common.kafka.dlq import DeadLetterPublisher, SourceRecord
from dingdee_common.observability.logging import get_logger
from dingdee_common.refdata import RefRequest, encode_request
from dingdee_transformer.metrics import TransformerMetrics
from dingdee_transformer.pipeline import Parked
from dingdee_transformer.settings import ParkingSettings

__all__ = ["ParkedEntry", "ParkingLot"]

log = get_logger(__name__)

WAITS = "dingdee-parked-waits"
REASON = "dingdee-parked-reason"
FIRST_AT = "dingdee-parked-first-at"
PARTITION = "dingdee-parked-partition"
OFFSET = "dingdee-parked-offset"
FLOW = "dingdee-parked-flow"
_OWN = (WAITS, REASON, FIRST_AT, PARTITION, OFFSET, FLOW)


class _Sender(Protocol):
    async def send(self, topic: str, *args: Any, **kwargs: Any) -> asyncio.Future[Any]: ...

    async def send_and_wait(self, topic: str, *args: Any, **kwargs: Any) -> object: ...


@dataclass(slots=True)
class ParkedEntry:
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]  # the original record's, without ours
    flow: str
    waits: tuple[tuple[str, str], ...]
    reason: str
    first_at: float  # epoch seconds of the first parking
    partition: int
    offset: int
    mapped_at: float = 0.0  # monotonic time of the mapping that parked it (0: read at start)
    requeued: bool = False


class ParkingLot:
    """The parked records of this transformer, by process instance id."""

    def __init__(
        self,
        settings: ParkingSettings,
        producer: _Sender,
        dlq: DeadLetterPublisher,
        metrics: TransformerMetrics,
        topics: tuple[str, str, str],
        *,
        owns: Callable[[int], bool] = lambda _p: True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``topics``: approvals.raw, transformer.parked, refdata.requests."""
        self.s = settings
        self.producer = producer
        self.dlq = dlq
        self.metrics = metrics
        self.source_topic, self.topic, self.requests_topic = topics
        self.owns = owns
        self.clock = clock
        self.entries: dict[bytes, ParkedEntry] = {}
        self.requested: dict[tuple[str, str], float] = {}
        self.changed_at: dict[str, float] = {}  # source → monotonic time of its last change
        self.wake = asyncio.Event()
        self.metrics_sources: set[str] = set()

    # ---- the batch loop's side --------------------------------------------------------------

    def full(self) -> bool:
        return len(self.entries) >= self.s.max_records

    async def park(self, record: SourceRecord, outcome: Parked) -> None:
        """Write ``record`` to the parked topic and wait for the ack; ask for a refresh."""
        key = record.key or outcome.process_instance_id.encode()
        before = self.entries.get(key)
        first_at = before.first_at if before is not None else self.clock()
        own = tuple((k, v) for k, v in record.headers if k not in _OWN)
        partition = int(hdr.get(record.headers, PARTITION) or record.partition)
        offset = int(hdr.get(record.headers, OFFSET) or record.offset)
        entry = ParkedEntry(
            key, record.value or b"", own, outcome.flow, outcome.waits, outcome.reason,
            first_at, partition, offset, outcome.at,
        )  # fmt: skip
        await self.producer.send_and_wait(
            self.topic, value=entry.value, key=key, headers=_headers(entry)
        )
        self.entries[key] = entry
        self._gauges()
        if any(self.changed_at.get(s, -1.0) >= outcome.at for s, _ in outcome.waits):
            self.wake.set()  # a row it waits for arrived while it was being parked
        for source, wanted in outcome.waits:
            self.metrics.refdata_misses.labels(source).inc()
            await self._request(source, wanted, outcome.reason)
        log.info(
            "transformer.record.parked",
            flow=outcome.flow,
            waits=[s for s, _ in outcome.waits],
            reason=outcome.reason[:300],
        )

    async def release(self, key: bytes | None) -> None:
        """The record made a bill or a dead letter: forget it (tombstone)."""
        if key is None or self.entries.pop(key, None) is None:
            return
        await self.producer.send(self.topic, value=None, key=key)
        self._gauges()

    async def _request(self, source: str, key: str, reason: str) -> None:
        now = self.clock()
        last = self.requested.get((source, key))
        if last is not None and now - last < self.s.request_interval_seconds:
            return
        self.requested[(source, key)] = now
        request = RefRequest(source=source, key=key, reason=reason[:500])
        await self.producer.send(self.requests_topic, value=encode_request(request))

    # ---- rebuilt from the topic -------------------------------------------------------------

    def load(self, key: bytes | None, value: bytes | None, headers: Any) -> None:
        """One record of the parked topic, read from the beginning at start."""
        if key is None:
            return
        if value is None:
            self.entries.pop(key, None)
            return
        if key in self.entries:  # our own write read back: the entry in memory knows more
            return
        h = tuple(headers or ())
        try:
            waits = tuple(tuple(w) for w in orjson.loads(hdr.get(h, WAITS) or "[]"))
            entry = ParkedEntry(
                key, value, tuple((k, v) for k, v in h if k not in _OWN),
                hdr.get(h, FLOW) or "unknown", waits,
                hdr.get(h, REASON) or "", float(hdr.get(h, FIRST_AT) or self.clock()),
                int(hdr.get(h, PARTITION) or 0), int(hdr.get(h, OFFSET) or 0),
            )  # fmt: skip
        except (ValueError, TypeError):
            log.warning("transformer.parked.unreadable", key=key[:80].decode(errors="replace"))
            return
        self.entries[key] = entry

    # ---- the lot's own task -----------------------------------------------------------------

    def changed(self, source: str) -> None:
        """A reference source changed (store listener): records waiting for it are retried,
        those parked after a mapping that came before this change included."""
        self.changed_at[source] = time.monotonic()
        self.wake.set()

    def requeue_all(self) -> None:
        """After a restart or an assignment: every parked record is tried again."""
        now = time.monotonic()
        for entry in self.entries.values():
            entry.requeued = False
            for source, _ in entry.waits:
                self.changed_at[source] = now
        self.wake.set()

    async def run(self) -> None:
        """Retry records whose sources changed; dead-letter the expired; until cancelled."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=self.s.check_seconds)
            self.wake.clear()
            await asyncio.sleep(0.2)  # a refresh writes many rows: retry once after them
            await self._requeue()
            await self._expire()
            self._gauges()

    async def _requeue(self) -> None:
        """Put back on approvals.raw every record a source it waits for changed for since it
        was mapped (once until it parks again)."""
        changed = self.changed_at
        for entry in list(self.entries.values()):
            if entry.requeued or not self.owns(entry.partition):
                continue
            if any(changed.get(s, -1.0) >= entry.mapped_at for s, _ in entry.waits):
                entry.requeued = True
                await self.producer.send(
                    self.source_topic, value=entry.value, key=entry.key, headers=_headers(entry)
                )

    async def _expire(self) -> None:
        now = self.clock()
        for entry in list(self.entries.values()):
            if now - entry.first_at < self.s.limit_seconds or not self.owns(entry.partition):
                continue
            await self.expire(entry)

    async def expire(self, entry: ParkedEntry) -> None:
        """Dead-letter one parked record with its reason; a replay maps it again."""
        record = SourceRecord(
            self.source_topic, entry.partition, entry.offset, entry.key, entry.value, entry.headers
        )
        hours = (self.clock() - entry.first_at) / 3600
        await self.dlq.publish(
            record,
            error_class=ErrorClass.PERMANENT,
            error_type="reference_missing",
            message=f"{entry.reason} (waited {hours:.1f} h)",
        )
        self.metrics.stage.dead_letters.labels("transformer", entry.flow, "permanent").inc()
        self.metrics.stage.records_out.labels("transformer", entry.flow, "dead_lettered").inc()
        log.warning("transformer.parked.expired", flow=entry.flow, reason=entry.reason[:300])
        await self.release(entry.key)

    def _gauges(self) -> None:
        counts: dict[str, int] = {}
        oldest = self.clock()
        for entry in self.entries.values():
            oldest = min(oldest, entry.first_at)
            for source in {s for s, _ in entry.waits}:
                counts[source] = counts.get(source, 0) + 1
        self.metrics_sources |= set(counts)
        for source in self.metrics_sources:
            self.metrics.parked.labels(source).set(counts.get(source, 0))
        self.metrics.parked_oldest.set(self.clock() - oldest if self.entries else 0)


def _headers(entry: ParkedEntry) -> list[tuple[str, bytes]]:
    ours = {
        WAITS: orjson.dumps([list(w) for w in entry.waits]).decode(),
        REASON: entry.reason[:2000],
        FIRST_AT: repr(entry.first_at),
        PARTITION: str(entry.partition),
        OFFSET: str(entry.offset),
        FLOW: entry.flow,
    }
    return [*entry.headers, *((k, v.encode()) for k, v in ours.items())]
