"""What the services' batch loops use of aiokafka's consumer and producer, as protocols.

``AIOKafkaConsumer`` and ``AIOKafkaProducer`` satisfy them as they are; the unit tests' in-memory
fakes (``tests/kafka_fakes.py``, in the style of faststream's ``FakeConsumer``/``FakeProducer``)
do too, so a loop is typed against exactly the calls it makes and tested without a broker.

- :class:`BatchConsumer`: the loader's loop (``dingdee_loader.app``, ``settle``): fetches,
  commits, pauses during a Kingdee outage, reads the high watermark for the lag gauge.
- :class:`RecordSender`: every dead-letter publisher (``dlq.DeadLetterPublisher``).
- :class:`Producer`: the loader's settler, which sends results without waiting on each.
- :class:`RecordBatches`: the transformer's outbox, which packs records into record batches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from aiokafka import ConsumerRecord, TopicPartition

__all__ = ["BatchConsumer", "Headers", "Producer", "RecordBatches", "RecordSender"]

Headers = list[tuple[str, bytes]]  # as aiokafka takes and delivers them


class BatchConsumer(Protocol):
    """What the loader's batch loop uses of ``AIOKafkaConsumer`` (all public)."""

    async def getmany(
        self, *, timeout_ms: int, max_records: int | None
    ) -> Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]]: ...

    async def commit(self, offsets: dict[TopicPartition, int]) -> None: ...

    def highwater(self, partition: TopicPartition) -> int | None: ...

    def assignment(self) -> set[TopicPartition]: ...

    def pause(self, *partitions: TopicPartition) -> None: ...

    def resume(self, *partitions: TopicPartition) -> None: ...

    def paused(self) -> set[TopicPartition]: ...


class RecordSender(Protocol):
    """One record, sent and acknowledged (``AIOKafkaProducer.send_and_wait``)."""

    async def send_and_wait(
        self, topic: str, *, value: bytes | None, key: bytes | None, headers: Headers
    ) -> object: ...


class Producer(RecordSender, Protocol):
    """Records sent without waiting for each ack (``AIOKafkaProducer.send``): the returned
    future resolves once the broker acknowledged the record."""

    async def send(
        self, topic: str, *, value: bytes | None, key: bytes | None, headers: Headers
    ) -> asyncio.Future[Any]: ...


class RecordBatches(Protocol):
    """What the transformer's ``Outbox`` uses of ``AIOKafkaProducer``: whole record batches."""

    async def partitions_for(self, topic: str) -> set[int]: ...

    def create_batch(self) -> Any: ...

    async def send_batch(
        self, batch: Any, topic: str, *, partition: int
    ) -> asyncio.Future[Any]: ...
