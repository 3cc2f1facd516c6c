"""Reconciliation's Kafka side on the real broker: dead letters, in-flight records, bill keys."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition

from dingdee_common.codec import encode_model
from dingdee_common.contracts.v1 import BillOutcome, BillReady, BillResult, SourceRef
from dingdee_common.errors import ErrorClass
from dingdee_common.kafka import headers as hdr
from dingdee_common.kafka.clients import make_consumer, make_producer
from dingdee_common.kafka.dlq import DeadLetterPublisher, SourceRecord
from dingdee_common.kafka.topics import Topics
from dingdee_common.settings import KafkaSettings
from dingdee_ops.reconcile.kafka_facts import Groups, gather_kafka_facts

pytestmark = pytest.mark.integration


def bill(flow: str, n: int) -> BillReady:
    return BillReady(
        flow=flow,
        bill_key=f"BX-{n}",
        form_id="ER_ExpReimbursement",
        model={"FBillNo": f"BX-{n}"},
        source=SourceRef(process_instance_id=f"inst-{n}"),
    )


async def test_facts_of_one_flow(kafka: KafkaSettings, topics: Topics, group_id: str) -> None:
    producer = make_producer(kafka)
    await producer.start()
    try:
        for n in range(4):
            b = bill("petty-cash", n)
            await producer.send_and_wait(
                topics.bills_ready,
                encode_model(b),
                key=b.bill_key.encode(),
                partition=0,
                headers=hdr.build("petty-cash", f"inst-{n}"),
            )
        other = bill("department-sync", 99)
        await producer.send_and_wait(
            topics.bills_ready,
            encode_model(other),
            key=b"BX-99",
            partition=0,
            headers=hdr.build("department-sync", "inst-99"),
        )
        result = BillResult(
            flow="petty-cash",
            bill_key="BX-7",
            form_id="ER_ExpReimbursement",
            outcome=BillOutcome.SAVED,
            source=SourceRef(process_instance_id="inst-7"),
        )
        await producer.send_and_wait(
            topics.bills_result,
            encode_model(result),
            key=b"BX-7",
            headers=hdr.build("petty-cash", "inst-7"),
        )
        dead = SourceRecord(
            topics.bills_ready,
            0,
            1,
            b"BX-1",
            encode_model(bill("petty-cash", 1)),
            tuple(hdr.build("petty-cash", "inst-1")),
        )
        await DeadLetterPublisher(producer, topics, "loader").publish(
            dead, error_class=ErrorClass.PERMANENT, error_type="kingdee_row_rejected", message="x"
        )
    finally:
        await producer.stop()
    loader_group = f"{group_id}-loader"
    consumer = make_consumer(kafka, group_id=loader_group)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topics.bills_ready, 0)])
        await consumer.commit({TopicPartition(topics.bills_ready, 0): 2})
    finally:
        await consumer.stop()

    facts = await gather_kafka_facts(
        kafka, topics, "petty-cash", Groups(transformer=f"{group_id}-t", loader=loader_group)
    )

    assert set(facts.dead_letters) == {"BX-1", "inst-1"}
    assert "kingdee_row_rejected" in facts.dead_letters["BX-1"]
    assert set(facts.in_flight) == {"BX-2", "inst-2", "BX-3", "inst-3"}, (
        "offsets 2 and 3 follow the commit"
    )
    assert facts.bill_keys == {f"inst-{n}": f"BX-{n}" for n in (0, 1, 2, 3, 7)}
