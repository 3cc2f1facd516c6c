"""In-memory stand-ins for aiokafka's consumer and producer, as the services' loops use them.

Like faststream's ``FakeConsumer``/``FakeProducer``: each implements the protocols of
``dingdee_common.kafka.protocols`` (checked by mypy below, and against aiokafka's own classes by
``tests/unit/shared/test_kafka_protocols.py``), so a loop built on them takes these fakes as they
are, without a broker, and records what it was asked to do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaTimeoutError

from dingdee_common.kafka.protocols import BatchConsumer, Producer, RecordBatches

__all__ = ["FakeConsumer", "FakeProducer", "Sent", "consumer_record"]


def consumer_record(
    topic: str,
    partition: int,
    offset: int,
    value: bytes,
    *,
    key: bytes = b"",
    headers: list[tuple[str, bytes]] | None = None,
    timestamp_ms: int = 1_000,
) -> ConsumerRecord[bytes, bytes]:
    """A record as ``getmany`` returns it."""
    return ConsumerRecord(
        topic,
        partition,
        offset,
        timestamp_ms,
        0,
        key,
        value,
        None,
        len(key),
        len(value),
        headers or [],
    )


class FakeConsumer:
    """Hands out the given fetches once each, then nothing; records commits and pauses.

    A fetch is a list of records (of any partitions); the assignment is every partition they
    come from unless given.
    """

    def __init__(
        self,
        *fetches: list[ConsumerRecord[bytes, bytes]],
        assignment: set[TopicPartition] | None = None,
    ) -> None:
        self._fetches = list(fetches)
        self._assignment = assignment or {
            TopicPartition(r.topic, r.partition) for fetch in fetches for r in fetch
        }
        self.committed: list[dict[TopicPartition, int]] = []
        self._paused: set[TopicPartition] = set()
        self.ends: dict[TopicPartition, int] = {}
        self.drained = asyncio.Event()

    async def getmany(
        self, *, timeout_ms: int, max_records: int | None
    ) -> Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]]:
        if not self._fetches:
            self.drained.set()
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        fetched: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
        for r in self._fetches.pop(0):
            tp = TopicPartition(r.topic, r.partition)
            if tp not in self._paused:
                fetched.setdefault(tp, []).append(r)
        return fetched

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.append(dict(offsets))

    def highwater(self, partition: TopicPartition) -> int | None:
        return self.ends.get(partition)

    def assignment(self) -> set[TopicPartition]:
        return set(self._assignment)

    def pause(self, *partitions: TopicPartition) -> None:
        self._paused.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self._paused.difference_update(partitions)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)


@dataclass(frozen=True)
class Sent:
    """One record the fake broker acknowledged."""

    topic: str
    partition: int | None
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


class _Builder:
    """A record batch being filled (``AIOKafkaProducer.create_batch``)."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = []

    def append(
        self,
        *,
        timestamp: int | None,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
    ) -> bool:
        self.records.append((key, value, headers))
        return True


class FakeProducer:
    """aiokafka's producer: single records (``send``, ``send_and_wait``) and record batches.

    Every record is acknowledged at once, except that the first ``fail_batches`` record batches
    fail and, while ``unacked`` is set, single records time out (a frozen broker); ``sent``
    holds every acknowledged record, in order.
    """

    def __init__(self, *, partitions: int = 3, fail_batches: int = 0) -> None:
        self.partitions = partitions
        self.fail_batches = fail_batches
        self.unacked = False
        self.sent: list[Sent] = []

    def to(self, topic: str) -> list[Sent]:
        """What was acknowledged on ``topic``, in order."""
        return [s for s in self.sent if s.topic == topic]

    def record_batches(self) -> FakeProducer:
        """The producer of record batches (the transformer's ``batches.Producer``)."""
        return self

    async def send(
        self,
        topic: str,
        *,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]:
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.unacked:
            done.set_exception(KafkaTimeoutError())
            return done
        self.sent.append(Sent(topic, partition, key, value, list(headers or [])))
        done.set_result(None)
        return done

    async def send_and_wait(self, topic: str, **record: Any) -> object:
        return await (await self.send(topic, **record))

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def create_batch(self) -> _Builder:
        return _Builder()

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.fail_batches:
            self.fail_batches -= 1
            future.set_exception(ConnectionError("broker gone"))
            return future
        for key, value, headers in batch.records:
            self.sent.append(Sent(topic, partition, key, value, list(headers)))
        future.set_result(None)
        return future


def _conforms(c: FakeConsumer, p: FakeProducer) -> tuple[BatchConsumer, Producer, RecordBatches]:
    """Never called: mypy checks that the fakes implement the protocols."""
    return c, p, p
