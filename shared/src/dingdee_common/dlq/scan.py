"""Reading the DLQ topics and the replay audit trail up to the end offsets seen at the start."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from dingdee_common.codec import decode_model
from dingdee_common.contracts.v1 import ReplayAudit
from dingdee_common.dlq.records import DeadLetter
from dingdee_common.errors import FatalError, PoisonMessageError
from dingdee_common.kafka.clients import make_consumer
from dingdee_common.kafka.topics import Topics
from dingdee_common.settings import KafkaSettings

__all__ = [
    "dlq_partitions",
    "handled_offsets",
    "read_audits",
    "read_dead_letters",
    "read_window",
    "tp_name",
]

_STALL_SECONDS = 30.0
_ROUNDS_PAST_END = 3


def tp_name(tp: TopicPartition) -> str:
    """``topic:partition``, the key of audit ``handled`` ranges."""
    return f"{tp.topic}:{tp.partition}"


async def dlq_partitions(consumer: AIOKafkaConsumer, topics: Iterable[str]) -> list[TopicPartition]:
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


async def read_window(
    consumer: AIOKafkaConsumer,
    tps: list[TopicPartition],
    start: Mapping[TopicPartition, int] | None = None,
) -> tuple[list[DeadLetter], dict[TopicPartition, int]]:
    """Records of ``tps`` from ``start`` (default: the beginning) until the partitions are drained.

    Drained means: every position reached the end offsets listed at the start *and* a fetch over
    all partitions came back empty. The second condition is needed because Tansu lists the end
    of a partition as "base offset of the last batch + 1", short of the real end when the last
    batch holds several records. Returns the records in partition order and where each
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
    out: dict[TopicPartition, list[DeadLetter]] = {tp: [] for tp in tps}
    loop = asyncio.get_running_loop()
    idle_since = loop.time()
    rounds_past_end = 0
    while True:
        batch = await consumer.getmany(timeout_ms=500, max_records=1000)
        for tp, records in batch.items():
            out[tp].extend(_letter(rec) for rec in records if rec.offset >= position[tp])
            if records:
                position[tp] = max(position[tp], records[-1].offset + 1)
        behind = [tp for tp in tps if position[tp] < listed_end[tp]]
        if not behind:
            # a topic written to right now would never come back empty: a few rounds suffice
            rounds_past_end += 1
            if not batch or rounds_past_end > _ROUNDS_PAST_END:
                break
        elif batch:
            idle_since = loop.time()
        elif loop.time() - idle_since > _STALL_SECONDS:
            names = ", ".join(tp_name(tp) for tp in behind)
            raise FatalError(f"the broker returned nothing from {names} for {_STALL_SECONDS:.0f}s")
    return [letter for tp in tps for letter in out[tp]], position


def _letter(rec: Any) -> DeadLetter:
    return DeadLetter(
        topic=rec.topic,
        partition=rec.partition,
        offset=rec.offset,
        timestamp_ms=rec.timestamp,
        key=rec.key,
        value=rec.value,
        headers=tuple(rec.headers or ()),
    )


async def read_audits(settings: KafkaSettings, topics: Topics) -> list[ReplayAudit]:
    """Every replay audit record so far (the audit topic keeps them forever)."""
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        tps = await dlq_partitions(consumer, [topics.replay_audit])
        letters, _ = await read_window(consumer, tps)
    finally:
        await consumer.stop()
    audits: list[ReplayAudit] = []
    for letter in letters:
        try:
            audits.append(
                decode_model(letter.value, ReplayAudit, supported_versions=frozenset({1}))
            )
        except PoisonMessageError:
            continue  # a foreign record on the audit topic says nothing about what was replayed
    return audits


def handled_offsets(audits: Iterable[ReplayAudit]) -> dict[str, set[int]]:
    """``topic:partition`` → offsets that earlier (non-dry) runs replayed or parked."""
    out: dict[str, set[int]] = {}
    for audit in audits:
        if audit.dry_run:
            continue
        for name, ranges in audit.handled.items():
            bucket = out.setdefault(name, set())
            for first, last in ranges:
                bucket.update(range(first, last + 1))
    return out


async def read_dead_letters(
    settings: KafkaSettings, topics: Topics, stages: Iterable[str]
) -> list[DeadLetter]:
    """Every record now on the DLQ topics of ``stages`` (no consumer group; nothing is committed).

    Raises:
        FatalError: a DLQ topic is missing or the broker stops answering.
    """
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        tps = await dlq_partitions(consumer, [topics.dlq(stage) for stage in stages])
        letters, _ = await read_window(consumer, tps)
    finally:
        await consumer.stop()
    return letters
