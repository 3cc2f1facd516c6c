"""Helpers shared by tests: bounded waits that say what they wait for."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from dingdee_common.kafka.clients import make_consumer
from dingdee_common.settings import KafkaSettings


async def poll_until(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.2,
) -> None:
    """Wait until ``check()`` is true; fail naming ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)


async def read_topic(settings: KafkaSettings, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record currently in ``topic`` (all partitions, from the start)."""
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            await consumer.topics()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[ConsumerRecord[bytes, bytes]] = []
        # Tansu reports a partition's end offset as the start of its last record batch + 1, so
        # reaching the end offsets is not enough: read on until a poll comes back empty.
        empty = 0
        while empty < 2:  # two empty polls in a row: a single empty fetch can be transient
            batches = await consumer.getmany(*tps, timeout_ms=500)
            for msgs in batches.values():
                records.extend(msgs)
            behind = [tp for tp, end in ends.items() if await consumer.position(tp) < end]
            empty = empty + 1 if not batches and not behind else 0
        return records
    finally:
        await consumer.stop()
