"""One topic's records of a batch, packed into Kafka record batches: one future per record batch.

aiokafka's ``send`` costs the transformer's thread ~15 µs a record (a future per message,
metadata checks, faust's produce signal); appending to a record batch costs ~1 µs. The batch loop
writes hundreds of bills and dedup changelog records at once, so it packs them here and hands each
partition's record batch to the producer in one ``send_batch`` call. Records keep their order
within a partition; each record learns which batch (future) carries it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

__all__ = ["Outbox"]


_BY_KEY = DefaultPartitioner()  # murmur2 of the key, as Kafka's Java client and a plain send do


class Outbox:
    """Records for ``topic``, added one by one and sent together by :meth:`send`."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, partitions: list[int]) -> None:
        self._producer = producer
        self._topic = topic
        self._partitions = partitions
        self._batches: list[tuple[int, Any]] = []  # (partition, BatchBuilder), in slot order
        self._open: dict[int, tuple[int, Any]] = {}  # partition → (slot, BatchBuilder) filling

    @classmethod
    async def open(cls, producer: AIOKafkaProducer, topic: str) -> Outbox:
        """An empty outbox for ``topic`` (waits for the topic's metadata the first time)."""
        return cls(producer, topic, sorted(await producer.partitions_for(topic)))

    def __len__(self) -> int:
        return len(self._batches)

    def add(
        self,
        key: bytes,
        value: bytes,
        headers: list[tuple[str, bytes]],
        partition: int | None = None,
    ) -> int:
        """Append a record (to ``partition``, else by key); returns its slot in the futures."""
        if partition is None:
            partition = _BY_KEY(key, self._partitions, self._partitions)
        current = self._open.get(partition)
        if current is not None and current[1].append(
            timestamp=None, key=key, value=value, headers=headers
        ):
            return current[0]
        # No batch for this partition yet, or it is full (its size is the producer's
        # max_batch_size): start the next one. A first record always fits (aiokafka's rule).
        builder = self._producer.create_batch()
        builder.append(timestamp=None, key=key, value=value, headers=headers)
        slot = len(self._batches)
        self._batches.append((partition, builder))
        self._open[partition] = (slot, builder)
        return slot

    async def send(self) -> list[asyncio.Future[Any]]:
        """Hand every record batch to the producer, in order; the futures by slot.

        A future is done when the broker acknowledged its batch (or failed it) and may be
        awaited by every record of that batch. Returns immediately for an empty outbox.
        """
        futures = [
            await self._producer.send_batch(builder, self._topic, partition=partition)
            for partition, builder in self._batches
        ]
        self._batches, self._open = [], {}
        return futures
