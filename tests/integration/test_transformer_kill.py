"""SIGKILL mid-stream: after a restart every approval has its bill (at-least-once, nothing lost).

Two checks, both on the exact set of bill keys:

* at the moment of the kill, every approval below the group's committed offsets already has its
  bill on ``bills.ready`` (an offset is committed only after its bill was acked);
* after a restart, which resumes from those committed offsets, every approval has its bill.

The approvals are produced in multi-record batches, so the restart resumes in the middle of a
broker batch, as it does in production. The restart is where faust used to lose records: it seeked
the partitions to their committed offsets while already delivering records fetched from there,
then dropped some of the re-fetched ones and committed past them; ``consumer.TransformerConsumer``
delivers each partition without holes instead.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from dingdee_common.kafka import headers as hdr
from dingdee_common.kafka.clients import make_consumer, make_producer
from dingdee_common.kafka.reading import partitions_of
from dingdee_common.kafka.topics import Topics
from dingdee_common.settings import KafkaSettings
from tests.helpers import poll_until, read_topic
from tests.integration.test_transformer_service import TRACEPARENT, item, transformer_process
from tests.unit.transformer.samples import snapshot

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = 8000  # enough work that the kill lands mid-stream (small batches: seconds of it)


async def _produce_batched(
    kafka: KafkaSettings, topic: str, items: list[tuple[bytes, bytes]]
) -> None:
    producer = make_producer(kafka, linger_ms=20)
    headers = [("traceparent", TRACEPARENT.encode()), (hdr.FLOW, b"petty-cash")]
    await producer.start()
    try:
        futures = [await producer.send(topic, value=v, key=k, headers=headers) for k, v in items]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _committed(kafka: KafkaSettings, group: str, topic: str) -> dict[TopicPartition, int]:
    """The group's committed offsets on ``topic`` (0 where nothing is committed yet)."""
    consumer = make_consumer(kafka, group_id=group)
    await consumer.start()
    try:
        out = {}
        for tp in await partitions_of(consumer, [topic]):
            out[tp] = await consumer.committed(tp) or 0
        return out
    finally:
        await consumer.stop()


def _bill_keys(records: list[Any]) -> list[str]:
    return [r.key.decode() for r in records if r.key]


async def test_sigkill_mid_stream_loses_nothing(kafka: KafkaSettings, tmp_path: Path) -> None:
    """A transformer killed while working leaves no approval without its bill after a restart."""
    topics = Topics(kafka.topic_prefix)
    group = f"transformer-{uuid.uuid4().hex[:8]}"
    snaps = [
        snapshot(business_id=f"2026110312{i:011d}", pid=f"pi-k{i}", fingerprint=f"k{i}")
        for i in range(N)
    ]
    bill_of = {s.process_instance_id: f"BYJ{s.business_id}" for s in snaps}
    expected = set(bill_of.values())
    await _produce_batched(kafka, topics.approvals_raw, [item(s) for s in snaps])
    sources = await read_topic(kafka, topics.approvals_raw)
    assert len(sources) == N

    (tmp_path / "1").mkdir()
    first = transformer_process(
        kafka,
        tmp_path / "1",
        group,
        # Small batches keep it busy for seconds, so the kill lands mid-stream.
        DINGDEE_BATCH_MAX_RECORDS="2",
        DINGDEE_BATCH_LINGER_SECONDS="0.01",
    )
    first.start()
    try:
        # Kill right after the first offset commit, so the restart resumes from committed offsets.
        async def some_commit() -> bool:
            return sum((await _committed(kafka, group, topics.approvals_raw)).values()) > 0

        await poll_until(some_commit, timeout=90, what="a first offset commit", interval=0.1)
    finally:
        first.kill()
    committed = await _committed(kafka, group, topics.approvals_raw)
    done = sum(committed.values())
    at_kill = set(_bill_keys(await read_topic(kafka, topics.bills_ready)))
    assert len(at_kill) < N, "the kill must land while the transformer is still working"
    covered = {
        bill_of[r.key.decode()]
        for r in sources
        if r.offset < committed[TopicPartition(r.topic, r.partition)]
    }
    assert len(covered) == done
    assert covered - at_kill == set(), "offsets were committed before their bills were acked"

    (tmp_path / "2").mkdir()
    second = transformer_process(kafka, tmp_path / "2", group)
    second.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 150
    try:
        # Distinct keys, not a record count: repeats after the kill must not end the wait early.
        while True:
            bills = _bill_keys(await read_topic(kafka, topics.bills_ready))
            if set(bills) >= expected or loop.time() > deadline:
                break
            await asyncio.sleep(1)
    finally:
        assert second.stop() == 0, second.tail()
    got = set(bills)
    missing = sorted((r.partition, r.offset) for r in sources if bill_of[r.key.decode()] not in got)
    assert not missing, (
        f"{len(missing)} approvals without a bill, (partition, offset): {missing[:20]}"
    )
    assert got == expected
    # at-least-once: only the approvals past the committed offsets are read (and mapped) again
    assert len(bills) - len(expected) <= N - done
