"""Reading a topic to its end, the one way every tool and test does it.

Tansu lists a partition's end as "base offset of the last batch + 1", short of the real end when
the last batch holds several records, so reaching the listed end offsets is not enough: a read is
done only when, past them, fetches over all partitions come back empty. Code that needs the end
itself (faust's table recovery) asks :func:`exact_end_offsets`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from dingdee_common.errors import FatalError
from dingdee_common.kafka.clients import make_consumer
from dingdee_common.settings import KafkaSettings

__all__ = ["exact_end_offsets", "partitions_of", "read_to_end", "read_topic", "tp_name"]

_STALL_SECONDS = 30.0
_ROUNDS_PAST_END = 3
_EMPTY_FETCHES = 2  # a single empty fetch can be transient


def tp_name(tp: TopicPartition) -> str:
    """``topic:partition``."""
    return f"{tp.topic}:{tp.partition}"


async def partitions_of(consumer: AIOKafkaConsumer, topics: Iterable[str]) -> list[TopicPartition]:
    """Every partition of ``topics``.

    Raises:
        FatalError: a topic does not exist (not provisioned, or a wrong ``topic_prefix``).
    """
    tps: list[TopicPartition] = []
    await consumer.topics()  # refreshes the metadata
    for topic in topics:
        ids = consumer.partitions_for_topic(topic)
        if not ids:
            raise FatalError(
                f"topic {topic} does not exist; run `dingdee topics create` or check "
                "DINGDEE_KAFKA__TOPIC_PREFIX",
                code="topic_missing",
            )
        tps.extend(TopicPartition(topic, p) for p in sorted(ids))
    return tps


async def read_to_end(
    consumer: AIOKafkaConsumer,
    tps: list[TopicPartition],
    start: Mapping[TopicPartition, int] | None = None,
) -> tuple[list[Any], dict[TopicPartition, int]]:
    """Records of ``tps`` from ``start`` (default: the beginning) until the partitions are drained.

    Drained means every position reached the end offsets listed at the start *and* fetches over
    all partitions came back empty twice in a row (a topic written to right now stops a few
    rounds past the listed end). Returns the records in partition order and where each
    partition's read ended.

    Raises:
        FatalError: the broker delivered nothing for 30 s although the end was not reached.
    """
    consumer.assign(tps)
    listed_end = await consumer.end_offsets(tps)
    first = await consumer.beginning_offsets(tps)
    position: dict[TopicPartition, int] = {}
    for tp in tps:
        position[tp] = max((start or {}).get(tp, first[tp]), first[tp])
        consumer.seek(tp, position[tp])
    out: dict[TopicPartition, list[Any]] = {tp: [] for tp in tps}
    loop = asyncio.get_running_loop()
    idle_since = loop.time()
    rounds_past_end = empty = 0
    while True:
        batch = await consumer.getmany(timeout_ms=500, max_records=1000)
        for tp, records in batch.items():
            out[tp].extend(rec for rec in records if rec.offset >= position[tp])
            if records:
                position[tp] = max(position[tp], records[-1].offset + 1)
        behind = [tp for tp in tps if position[tp] < listed_end[tp]]
        if not behind:
            rounds_past_end += 1
            empty = 0 if batch else empty + 1
            if empty >= _EMPTY_FETCHES or rounds_past_end > _ROUNDS_PAST_END + _EMPTY_FETCHES:
                break
        elif batch:
            idle_since = loop.time()
        elif loop.time() - idle_since > _STALL_SECONDS:
            names = ", ".join(tp_name(tp) for tp in behind)
            raise FatalError(f"the broker returned nothing from {names} for {_STALL_SECONDS:.0f}s")
    return [rec for tp in tps for rec in out[tp]], position


async def exact_end_offsets(
    settings: KafkaSettings, listed: Mapping[Any, int], *, timeout: float = 10.0
) -> dict[Any, int]:
    """The real end offsets of partitions whose end the broker *listed* as ``listed``.

    A fetch from just below a listed end carries the partition's high watermark, which Tansu
    reports correctly; on Apache Kafka it equals the listed end and nothing changes. One fetch per
    non-empty partition. A partition that answers nothing within ``timeout`` keeps its listed end.
    """
    ends = dict(listed)
    # keys stay as given (faust passes its own TP tuples); the consumer gets aiokafka's
    probe = {TopicPartition(tp[0], tp[1]): tp for tp, end in listed.items() if end and end > 0}
    if not probe:
        return ends
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        consumer.assign(list(probe))
        for tp, key in probe.items():
            consumer.seek(tp, listed[key] - 1)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        waiting = set(probe)
        while waiting and loop.time() < deadline:
            await consumer.getmany(*waiting, timeout_ms=200)
            for tp in list(waiting):
                high = consumer.highwater(tp)
                if high is not None:
                    ends[probe[tp]] = max(listed[probe[tp]], high)
                    waiting.discard(tp)
        return ends
    finally:
        await consumer.stop()


async def read_topic(settings: KafkaSettings, topic: str) -> list[Any]:
    """Every record currently in ``topic`` (all partitions, from the start)."""
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        records, _ = await read_to_end(consumer, await partitions_of(consumer, [topic]))
        return records
    finally:
        await consumer.stop()
