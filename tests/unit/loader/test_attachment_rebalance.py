"""The attachment worker across rebalances (issue #18): a commit the group refuses is logged and
the worker goes on; a revoke waits for the item in hand; an item of a partition already given
up is left to its next owner. The uploads themselves are stubbed: what is checked here is the
consumer side (``AttachmentWorker.run``/``revoked``)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from prometheus_client import CollectorRegistry

from dingdee_common.kafka.topics import Topics
from dingdee_common.observability.followups import FollowupMetrics
from dingdee_common.settings import RetrySettings
from dingdee_loader.attachments import AttachmentWorker
from tests.kafka_fakes import FakeConsumer, FakeProducer, consumer_record

TOPIC = Topics("").attachments_work
TP0, TP1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


class GroupConsumer(FakeConsumer):
    """``FakeConsumer`` plus subscribe/start/stop; ``refuse`` holds the error each commit
    raises, in order (None: accepted)."""

    def __init__(self, *fetches: Any, refuse: list[KafkaError | None]) -> None:
        super().__init__(*fetches)
        self.refuse = refuse
        self.listener: Any = None

    def subscribe(self, topics: list[str], listener: Any) -> None:
        assert topics == [TOPIC]
        self.listener = listener

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        error = self.refuse.pop(0) if self.refuse else None
        if error is not None:
            raise error
        await super().commit(offsets)


def worker(consumer: GroupConsumer) -> AttachmentWorker:
    return AttachmentWorker(
        client=None,  # type: ignore[arg-type]  # _handle is stubbed: no Kingdee call
        lanes=asyncio.Queue(),
        consumer=consumer,
        producer=FakeProducer(),
        topics=Topics(""),
        metrics=FollowupMetrics.create(CollectorRegistry()),
        retry=RetrySettings(initial_backoff_seconds=0.01),
        chunk_bytes=1 << 20,
        http=httpx.AsyncClient(),
    )


def item(partition: int, offset: int) -> Any:
    return consumer_record(TOPIC, partition, offset, b"{}")


async def run_until_drained(w: AttachmentWorker, consumer: GroupConsumer) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(w.run(stop))
    await asyncio.wait_for(consumer.drained.wait(), 5)
    stop.set()
    await asyncio.wait_for(task, 5)


@pytest.mark.parametrize(
    "refusal",
    [CommitFailedError("the group rebalanced"), IllegalStateError("Partition is not assigned")],
)
async def test_a_refused_commit_does_not_end_the_worker(
    refusal: KafkaError, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer = GroupConsumer([item(0, 0)], [item(0, 1)], refuse=[refusal])
    w = worker(consumer)
    handled: list[int] = []

    async def handle(tp: TopicPartition, record: Any) -> None:
        handled.append(record.offset)

    monkeypatch.setattr(w, "_handle", handle)
    await run_until_drained(w, consumer)
    assert handled == [0, 1]
    assert consumer.committed == [{TP0: 2}]  # the first commit refused, the second taken


async def test_a_revoke_waits_for_the_item_in_hand_and_its_commit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = GroupConsumer([item(0, 0)], refuse=[])
    w = worker(consumer)
    started, release = asyncio.Event(), asyncio.Event()

    async def handle(tp: TopicPartition, record: Any) -> None:
        started.set()
        await release.wait()

    monkeypatch.setattr(w, "_handle", handle)
    stop = asyncio.Event()
    task = asyncio.create_task(w.run(stop))
    await asyncio.wait_for(started.wait(), 5)
    revoke = asyncio.create_task(consumer.listener.on_partitions_revoked({TP0}))
    await asyncio.sleep(0.1)
    assert not revoke.done(), "the revoke must wait for the upload in hand"
    release.set()
    await asyncio.wait_for(revoke, 5)
    assert consumer.committed == [{TP0: 1}], "committed before the partition is given up"
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_an_item_of_a_revoked_partition_is_left_to_its_next_owner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = GroupConsumer([item(1, 5)], [item(0, 3)], refuse=[])
    w = worker(consumer)
    handled: list[tuple[int, int]] = []

    async def handle(tp: TopicPartition, record: Any) -> None:
        handled.append((tp.partition, record.offset))

    monkeypatch.setattr(w, "_handle", handle)
    await w.revoked({TP0, TP1})
    w.assigned({TP0})  # TP0 comes back, TP1 went to another loader
    await run_until_drained(w, consumer)
    assert handled == [(0, 3)]
    assert consumer.committed == [{TP0: 4}]
