"""What the Kafka topics know about one flow: dead letters, records in flight, bill keys."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from aiokafka import TopicPartition

from dingdee_common.kafka.clients import make_consumer
from dingdee_common.kafka.reading import partitions_of
from dingdee_common.kafka.topics import STAGES, Topics
from dingdee_common.settings import KafkaSettings
from dingdee_ops.dlq.records import DeadLetter
from dingdee_ops.dlq.scan import read_window
from dingdee_ops.reconcile.model import KafkaFacts

__all__ = ["Groups", "gather_kafka_facts"]


@dataclass(frozen=True, slots=True)
class Groups:
    """Consumer groups whose committed offsets separate "done" from "in flight"."""

    transformer: str = "transformer"
    loader: str = "loader"


async def _read(
    settings: KafkaSettings, topic: str, group: str | None = None
) -> tuple[list[DeadLetter], dict[TopicPartition, int]]:
    """Every record of ``topic`` and, when ``group`` is given, its committed offsets."""
    consumer = make_consumer(settings, group_id=group)
    await consumer.start()
    try:
        tps = await partitions_of(consumer, [topic])
        committed: dict[TopicPartition, int] = {}
        if group:
            for tp in tps:
                offset = await consumer.committed(tp)
                committed[tp] = offset if offset is not None else 0
        records, _ = await read_window(consumer, tps)
    finally:
        await consumer.stop()
    return records, committed


def _of_flow(record: DeadLetter, flow: str) -> bool:
    return record.flow == flow


def _refs(record: DeadLetter) -> list[str]:
    return [ref for ref in (record.key_text, record.source_id) if ref]


def _bill_key_pair(record: DeadLetter) -> tuple[str, str] | None:
    try:
        value = orjson.loads(record.value or b"")
        return str(value["source"]["process_instance_id"]), str(value["bill_key"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


async def gather_kafka_facts(
    settings: KafkaSettings, topics: Topics, flow: str, groups: Groups | None = None
) -> KafkaFacts:
    """Read the DLQs, the pipeline topics and the groups' offsets for ``flow``.

    Raises:
        FatalError: a topic is missing or the broker stops answering.
    """
    groups = groups or Groups()
    dead: dict[str, str] = {}
    for stage in STAGES:
        letters, _ = await _read(settings, topics.dlq(stage))
        for letter in filter(lambda r: _of_flow(r, flow), letters):
            for ref in _refs(letter):
                dead[ref] = f"{letter.coordinates}: {letter.error_type}"
    flying: dict[str, str] = {}
    bill_keys: dict[str, str] = {}
    for topic, group in (
        (topics.approvals_raw, groups.transformer),
        (topics.bills_ready, groups.loader),
    ):
        records, committed = await _read(settings, topic, group)
        for record in filter(lambda r: _of_flow(r, flow), records):
            pair = _bill_key_pair(record) if topic == topics.bills_ready else None
            if pair:
                bill_keys[pair[0]] = pair[1]
            if record.offset >= committed[TopicPartition(record.topic, record.partition)]:
                for ref in _refs(record):
                    flying[ref] = f"{record.coordinates} 尚未被 {group} 处理"
    results, _ = await _read(settings, topics.bills_result)
    for record in filter(lambda r: _of_flow(r, flow), results):
        pair = _bill_key_pair(record)
        if pair:
            bill_keys[pair[0]] = pair[1]
    return KafkaFacts(dead_letters=dead, in_flight=flying, bill_keys=bill_keys)
