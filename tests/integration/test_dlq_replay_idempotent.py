"""Replaying the same dead letter twice never creates a second Kingdee bill (DESIGN §6).

The whole stack runs (broker, both sandboxes, the three services). A real ``bills.ready`` record the
pipeline produced is dead-lettered twice, byte for byte, then replayed: the loader sees the same
bill three times and Kingdee still holds exactly one bill with that number.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dingdee_common.codec import decode_model
from dingdee_common.contracts.v1 import BillReady, BillResult
from dingdee_common.errors import ErrorClass
from dingdee_common.kafka.clients import make_producer
from dingdee_common.kafka.dlq import DeadLetterPublisher, SourceRecord
from dingdee_common.settings import KafkaSettings
from dingdee_dev.stack import Stack, StackConfig
from dingdee_ops.dlq import Action, ReplayEngine, ReplayOptions, Selection
from tests.helpers import demo_flows_file, poll_until
from tests.integration.test_dlq_replay import read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
V1 = frozenset({1})


async def results_for(kafka: KafkaSettings, topic: str, bill_key: str) -> list[BillResult]:
    rows = await read_topic(kafka, topic)
    results = [decode_model(v, BillResult, supported_versions=V1) for k, v, _ in rows if k]
    return [r for r in results if r.bill_key == bill_key]


async def test_replaying_a_bill_twice_leaves_one_kingdee_bill(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    config = StackConfig(
        workdir=tmp_path,
        flows_file=demo_flows_file(),
        demo=20,
        seed=3,
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"rp{tmp_path.name[-6:]}.",
    )
    async with Stack(config) as stack:
        kafka, topics = stack.kafka, stack.topics

        async def a_bill_saved() -> bool:
            return bool(await read_topic(kafka, topics.bills_result))

        await poll_until(a_bill_saved, timeout=240, what="the pipeline to save a first bill")
        key, value, headers = (await read_topic(kafka, topics.bills_ready))[0]
        bill = decode_model(value, BillReady, supported_versions=V1)

        async def first_result() -> bool:
            return bool(await results_for(kafka, topics.bills_result, bill.bill_key))

        await poll_until(first_result, timeout=120, what=f"the first result of {bill.bill_key}")
        before = [
            b for b in await stack.kingdee_bills(bill.form_id) if b["number"] == bill.bill_key
        ]
        assert len(before) == 1

        producer = make_producer(kafka)
        await producer.start()
        try:
            dead = DeadLetterPublisher(producer, topics, "loader")
            for attempt in range(2):
                record = SourceRecord(topics.bills_ready, 0, attempt, key, value, headers)
                await dead.publish(
                    record,
                    error_class=ErrorClass.EXHAUSTED,
                    error_type="kingdee_timeout",
                    message="金蝶 BatchSave 超时，结果未知",
                )
        finally:
            await producer.stop()
        report = await ReplayEngine(kafka, topics).run(
            ReplayOptions(
                selection=Selection(stages=("loader",), keys=frozenset({bill.bill_key})),
                dry_run=False,
                rate_per_second=0,
            )
        )
        assert report.done == {Action.REPLAY: 2}

        async def replays_loaded() -> bool:
            return len(await results_for(kafka, topics.bills_result, bill.bill_key)) >= 3

        await poll_until(replays_loaded, timeout=120, what="the loader to process both replays")
        after = [b for b in await stack.kingdee_bills(bill.form_id) if b["number"] == bill.bill_key]
        outcomes = [
            r.outcome.value for r in await results_for(kafka, topics.bills_result, bill.bill_key)
        ]

    assert len(after) == 1, f"Kingdee holds {len(after)} bills numbered {bill.bill_key}"
    assert outcomes.count("saved") == 1, outcomes
    assert outcomes.count("already_exists") == 2, outcomes
