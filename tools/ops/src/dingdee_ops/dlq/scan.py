"""Reading the DLQ topics and the replay audit trail up to the end offsets seen at the start."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from dingdee_common.codec import decode_model
from dingdee_common.contracts.v1 import ReplayAudit
from dingdee_common.errors import PoisonMessageError
from dingdee_common.kafka.clients import make_consumer
from dingdee_common.kafka.reading import partitions_of, read_to_end
from dingdee_common.kafka.topics import Topics
from dingdee_common.settings import KafkaSettings
from dingdee_ops.dlq.records import DeadLetter

__all__ = [
    "handled_offsets",
    "read_audits",
    "read_dead_letters",
    "read_window",
    "was_handled",
]


async def read_window(
    consumer: AIOKafkaConsumer,
    tps: list[TopicPartition],
    start: Mapping[TopicPartition, int] | None = None,
) -> tuple[list[DeadLetter], dict[TopicPartition, int]]:
    """Dead letters of ``tps`` read to the end (see :func:`read_to_end`)."""
    records, position = await read_to_end(consumer, tps, start)
    return [_letter(rec) for rec in records], position


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
        tps = await partitions_of(consumer, [topics.replay_audit])
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


def was_handled(handled: Mapping[str, set[int]], letter: DeadLetter) -> bool:
    """Whether an earlier replay run replayed or parked ``letter`` (see :func:`handled_offsets`)."""
    return letter.offset in handled.get(f"{letter.topic}:{letter.partition}", ())


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
        tps = await partitions_of(consumer, [topics.dlq(stage) for stage in stages])
        letters, _ = await read_window(consumer, tps)
    finally:
        await consumer.stop()
    return letters
