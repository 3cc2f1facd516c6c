"""Reading a topic to its end, the one way every tool and test does it.

Tansu lists a partition's end as "base offset of the last batch + 1", short of the real end when
the last batch holds several records. :func:`exact_end_offsets` corrects it with one fetch below
the listed end (whose response carries the true high watermark); every read to the end, faust's
table recovery and the progress counts use it.
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


async def exact_end_offsets(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], *, timeout: float = 10.0
) -> dict[TopicPartition, int]:
    """The end offsets of ``tps``, exact even where the broker lists them short.

    Assigns ``tps`` to ``consumer`` (which must have no group) and fetches once from just below
    each non-empty listed end: the fetch response's high watermark is the real end (on Apache
    Kafka it equals the listed one). A partition that answers nothing within ``timeout`` keeps
    its listed end.
    """
    consumer.assign(tps)
    ends: dict[TopicPartition, int] = dict(await consumer.end_offsets(tps))
    waiting = {tp for tp, end in ends.items() if end > 0}
    for tp in waiting:
        consumer.seek(tp, ends[tp] - 1)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while waiting and loop.time() < deadline:
        await consumer.getmany(*waiting, timeout_ms=200)
        for tp in list(waiting):
            high = consumer.highwater(tp)
            if high is not None:
                ends[tp] = max(ends[tp], high)
                waiting.discard(tp)
    return ends


async def read_to_end(
    consumer: AIOKafkaConsumer,
    tps: list[TopicPartition],
    start: Mapping[TopicPartition, int] | None = None,
) -> tuple[list[Any], dict[TopicPartition, int]]:
    """Records of ``tps`` from ``start`` (default: the beginning) up to their ends at the call.

    Returns the records in partition order and where each partition's read ended.

    Raises:
        FatalError: the broker delivered nothing for 30 s although the end was not reached.
    """
    end = await exact_end_offsets(consumer, tps)
    first = await consumer.beginning_offsets(tps)
    position: dict[TopicPartition, int] = {}
    for tp in tps:
        position[tp] = max((start or {}).get(tp, first[tp]), first[tp])
        consumer.seek(tp, position[tp])
    out: dict[TopicPartition, list[Any]] = {tp: [] for tp in tps}
    loop = asyncio.get_running_loop()
    idle_since = loop.time()
    while behind := [tp for tp in tps if position[tp] < end[tp]]:
        batch = await consumer.getmany(*behind, timeout_ms=500, max_records=1000)
        for tp, records in batch.items():
            out[tp].extend(rec for rec in records if position[tp] <= rec.offset < end[tp])
            if records:
                position[tp] = max(position[tp], min(records[-1].offset + 1, end[tp]))
        if batch:
            idle_since = loop.time()
        elif loop.time() - idle_since > _STALL_SECONDS:
            names = ", ".join(tp_name(tp) for tp in behind)
            raise FatalError(f"the broker returned nothing from {names} for {_STALL_SECONDS:.0f}s")
    return [rec for tp in tps for rec in out[tp]], position


async def read_topic(settings: KafkaSettings, topic: str) -> list[Any]:
    """Every record currently in ``topic`` (all partitions, from the start)."""
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        records, _ = await read_to_end(consumer, await partitions_of(consumer, [topic]))
        return records
    finally:
        await consumer.stop()
