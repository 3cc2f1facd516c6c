"""One topic's records of a batch, packed into Kafka record batches: one future per record batch.

A ``send`` per record costs a future, metadata checks and (through faust) a produce signal each:
~18 µs of CPU per 1.5 KB record against ~11 µs packed into record batches (aiokafka on the local
broker, partitioning and the sender's requests included; appending itself is ~1 µs). The batch
loop writes hundreds of bills and dedup changelog records at once, so it packs them here and
hands each partition's record batch to the producer in one ``send_batch`` call. Records keep
their order within a partition; each record learns which batch (future) carries it.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

from dingdee_common.kafka.protocols import RecordBatches

__all__ = ["Outbox", "RecordBatches", "murmur2", "partition_for"]


_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's key hash (Java client ``Utils.murmur2``), as aiokafka's ``murmur2`` computes it.

    The same function with the words unpacked in one call and no redundant masking: 1.9 µs for a
    bill key instead of 3.5 (a unit test holds it to aiokafka's on random keys).
    """
    length = len(data)
    h = 0x9747B28C ^ length
    words = length >> 2
    for word in struct.unpack_from(f"<{words}I", data):
        k = (word * _M) & _MASK
        k = ((k ^ (k >> 24)) * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    if rest:
        tail = data[words * 4 :]
        if rest == 3:
            h ^= tail[2] << 16
        if rest >= 2:
            h ^= tail[1] << 8
        h = ((h ^ tail[0]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def partition_for(key: bytes, partitions: list[int]) -> int:
    """The partition a keyed record goes to, as Kafka's default partitioner chooses it."""
    return partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]


class Outbox:
    """Records for ``topic``, added one by one and sent together by :meth:`send`."""

    def __init__(self, producer: RecordBatches, topic: str, partitions: list[int]) -> None:
        self._producer = producer
        self._topic = topic
        self._partitions = partitions
        self._batches: list[tuple[int, Any]] = []  # (partition, BatchBuilder), in slot order
        self._open: dict[int, tuple[int, Any]] = {}  # partition → (slot, BatchBuilder) filling

    @classmethod
    async def open(cls, producer: RecordBatches, topic: str) -> Outbox:
        """An empty outbox for ``topic`` (waits for the topic's metadata the first time)."""
        return cls(producer, topic, sorted(await producer.partitions_for(topic)))

    def add(
        self,
        key: bytes,
        value: bytes,
        headers: list[tuple[str, bytes]],
        partition: int | None = None,
    ) -> int:
        """Append a record (to ``partition``, else by key); returns its slot in the futures."""
        if partition is None:
            partition = partition_for(key, self._partitions)
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
