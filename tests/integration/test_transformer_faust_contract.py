"""The private faust/aiokafka behaviour ``faust_adapter`` relies on that needs a running client.

With the embedded broker: the fetch wait set after aiokafka builds its consumer is the one its
fetcher uses; aiokafka's coordination and fetch tasks are where ``consumer_failure`` looks; faust's
``_ensure_producer()`` is a started aiokafka producer whose record batches reach the broker. The
rest of the contract is in ``tests/unit/transformer/test_faust_contract.py``.
"""

from __future__ import annotations

import asyncio
import uuid

import faust
from aiokafka import AIOKafkaProducer

from dingdee_common.kafka.clients import make_consumer
from dingdee_common.kafka.reading import read_topic
from dingdee_common.kafka.topics import Topics
from dingdee_common.settings import KafkaSettings
from dingdee_transformer.app import faust_broker
from dingdee_transformer.faust_adapter import FaustProducer
from dingdee_transformer.outbox import Outbox
from tests.helpers import poll_until


async def test_the_fetch_wait_set_before_start_is_the_fetchers_and_the_tasks_are_there(
    kafka: KafkaSettings,
) -> None:
    topic = Topics(kafka.topic_prefix).approvals_raw
    consumer = make_consumer(kafka, group_id=f"contract-{uuid.uuid4().hex[:8]}")
    consumer._fetch_max_wait_ms = 123  # as _ConsumerThread does after faust builds it
    await consumer.start()
    consumer.subscribe([topic])
    try:
        assert consumer._fetcher._fetch_max_wait_ms == 123
        await poll_until(lambda: bool(consumer.assignment()), timeout=60, what="an assignment")
        coordination = consumer._coordinator._coordination_task
        fetching = consumer._fetcher._fetch_task
        assert isinstance(coordination, asyncio.Future) and not coordination.done()
        assert isinstance(fetching, asyncio.Future) and not fetching.done()
    finally:
        await consumer.stop()


async def test_faust_ensure_producer_sends_record_batches(kafka: KafkaSettings) -> None:
    topic = Topics(kafka.topic_prefix).bills_ready
    urls, credentials = faust_broker(kafka)
    app = faust.App(
        f"contract-{uuid.uuid4().hex[:8]}",
        broker=urls,
        broker_credentials=credentials,
        autodiscover=False,
        web_enabled=False,
    )
    await app.producer.start()
    try:
        batches = FaustProducer(app).record_batches()
        assert isinstance(batches, AIOKafkaProducer)
        outbox = await Outbox.open(batches, topic)
        outbox.add(b"k1", b"v1", [])
        outbox.add(b"k2", b"v2", [])
        await asyncio.gather(*await outbox.send())
    finally:
        await app.producer.stop()
    records = await read_topic(kafka, topic)
    assert sorted(r.value for r in records) == [b"v1", b"v2"]
