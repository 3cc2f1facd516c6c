"""Shared plumbing against the real broker: provisioning, dead letters, the ops HTTP port."""

from __future__ import annotations

import httpx
import pytest
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from dingdee_common.errors import ErrorClass
from dingdee_common.kafka import headers as hdr
from dingdee_common.kafka.clients import make_consumer, make_producer
from dingdee_common.kafka.dlq import DeadLetterPublisher, SourceRecord
from dingdee_common.kafka.reading import exact_end_offsets
from dingdee_common.kafka.topics import Topics, provision
from dingdee_common.observability.metrics import StageMetrics
from dingdee_common.observability.server import Health, OpsServer
from dingdee_common.settings import HttpServerSettings, KafkaSettings

pytestmark = pytest.mark.integration


async def test_provisioning_is_idempotent(kafka: KafkaSettings, topics: Topics) -> None:
    """The fixture already provisioned; a second run creates nothing and fails on nothing."""
    assert await provision(kafka) == []
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    try:
        existing = await consumer.topics()
    finally:
        await consumer.stop()
    assert {s.name for s in topics.specs(kafka.partitions)} <= existing


async def test_dead_letter_keeps_bytes_and_adds_headers(
    kafka: KafkaSettings, topics: Topics
) -> None:
    producer = make_producer(kafka)
    await producer.start()
    record = SourceRecord(
        topic=topics.bills_ready,
        partition=1,
        offset=7,
        key=b"BYJ202611010930000000001",
        value='{"schema_version":1,"备注":"原样"}'.encode(),
        headers=((hdr.FLOW, b"petty-cash"),),
    )
    try:
        await DeadLetterPublisher(producer, topics, "loader").publish(
            record,
            error_class=ErrorClass.PERMANENT,
            error_type="kingdee_validation",
            message="字段“申请人”是必填项",
        )
    finally:
        await producer.stop()
    consumer = make_consumer(kafka, topics.dlq("loader"), group_id=None)
    await consumer.start()
    try:
        message = await consumer.getone()
    finally:
        await consumer.stop()
    assert (message.key, message.value) == (record.key, record.value)
    got = hdr.as_dict(message.headers)
    assert got["dlq-original-topic"] == topics.bills_ready
    assert got["dlq-original-offset"] == "7"
    assert got["dlq-stage"] == "loader"
    assert got["dlq-error-message"] == "字段“申请人”是必填项"
    assert got[hdr.FLOW] == "petty-cash"


async def test_ops_server_serves_metrics_health_and_readiness() -> None:
    registry = CollectorRegistry()
    metrics = StageMetrics.create(registry)
    metrics.records_in.labels("loader", "petty-cash").inc()
    health = Health(stale_after=60)
    server = OpsServer(HttpServerSettings(host="127.0.0.1", port=0), registry, health)
    await server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{base}/healthz")).status_code == 200
            not_ready = await client.get(f"{base}/readyz")
            assert not_ready.status_code == 503
            assert not_ready.json()["reason"] == "starting"
            health.set_ready()
            assert (await client.get(f"{base}/readyz")).status_code == 200
            body = (await client.get(f"{base}/metrics")).text
    finally:
        await server.stop()
    assert 'dingdee_records_in_total{flow="petty-cash",stage="loader"} 1.0' in body


async def test_exact_end_offsets_reach_past_a_multi_record_last_batch(
    kafka: KafkaSettings, topics: Topics
) -> None:
    """Batches of 1, 3 and 5 records: the exact end is the record count, whatever is listed."""
    producer = make_producer(kafka, linger_ms=50)
    await producer.start()
    try:
        for n in (1, 3, 5):
            sent = [
                await producer.send(topics.approvals_raw, b"x", key=b"k", partition=0)
                for _ in range(n)
            ]
            for future in sent:
                await future
    finally:
        await producer.stop()
    tp = TopicPartition(topics.approvals_raw, 0)
    empty = TopicPartition(topics.approvals_raw, 1)
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    try:
        listed = await consumer.end_offsets([tp, empty])
        exact = await exact_end_offsets(consumer, [tp, empty])
    finally:
        await consumer.stop()
    assert exact == {tp: 9, empty: 0}, f"listed {listed}"
