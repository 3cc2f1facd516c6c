"""Whole-fetch intake: batches from fetches, contiguous offsets per partition, stale records out."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import faust
import faust.tables.manager
import faust.transport.consumer
import mode
import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from dingdee_transformer.faust_adapter import (
    FaustInternalsError,
    TransformerConsumer,
    consumer_failure,
    require_faust_internals,
    stall_clock,
)
from dingdee_transformer.intake import FetchIntake

TOPIC = "approvals.raw"
P0 = TP(TOPIC, 0)


def _message(offset: int, generation: int = 1) -> Any:
    return SimpleNamespace(tp=P0, offset=offset, generation_id=generation)


def _intake(generation: int = 1) -> tuple[FetchIntake, Any]:
    app: Any = SimpleNamespace(
        consumer_generation_id=generation, monitor=SimpleNamespace(stream_inbound_time={})
    )
    intake = FetchIntake(
        TOPIC,
        generation=lambda: app.consumer_generation_id,
        taken=stall_clock(app),
        max_fetches=2,
    )
    return intake, app


class TestFetchIntake:
    async def test_a_batch_spans_fetches_up_to_the_maximum(self) -> None:
        intake, _ = _intake()
        await intake.put([_message(0), _message(1), _message(2)])
        await intake.put([_message(3), _message(4)])
        first = await intake.take(4, linger=0.01)
        second = await intake.take(4, linger=0.01)
        assert [m.offset for m in first] == [0, 1, 2, 3]
        assert [m.offset for m in second] == [4]

    async def test_taking_a_fetch_stamps_its_partition_for_the_stall_detector(self) -> None:
        intake, app = _intake()
        inbound = app.monitor.stream_inbound_time
        await intake.put([_message(0)])
        assert inbound == {}, "fetched is not taken: a loop that never takes is stalled"
        before = time.monotonic()
        await intake.take(4, linger=0.01)
        assert before <= inbound[P0] <= time.monotonic()

    async def test_linger_waits_for_a_fuller_batch(self) -> None:
        intake, _ = _intake()
        await intake.put([_message(0)])

        async def later() -> None:
            await asyncio.sleep(0.05)
            await intake.put([_message(1)])

        task = asyncio.create_task(later())
        batch = await intake.take(2, linger=5.0)  # full at 2: returns without the whole linger
        await task
        assert [m.offset for m in batch] == [0, 1]

    async def test_linger_ends_a_partial_batch(self) -> None:
        intake, _ = _intake()
        await intake.put([_message(0)])
        batch = await asyncio.wait_for(intake.take(10, linger=0.02), 1)
        assert [m.offset for m in batch] == [0]

    async def test_records_of_an_older_generation_are_dropped(self) -> None:
        intake, app = _intake(generation=1)
        await intake.put([_message(0), _message(1)])
        app.consumer_generation_id = 2  # a rebalance: the new owner reads them again
        await intake.put([_message(0, generation=2)])
        batch = await intake.take(10, linger=0.01)
        assert [(m.offset, m.generation_id) for m in batch] == [(0, 2)]

    async def test_put_waits_while_the_loop_is_behind(self) -> None:
        intake, _ = _intake()
        await intake.put([_message(0)])
        await intake.put([_message(1)])
        blocked = asyncio.create_task(intake.put([_message(2)]))
        await asyncio.sleep(0.02)
        assert not blocked.done(), "a full intake must hold the consumer back"
        await intake.take(1, linger=0)
        await asyncio.wait_for(blocked, 1)


def _consumer(
    next_offset: int | None,
) -> tuple[TransformerConsumer, list[tuple[TP, int]], list[tuple[TP, int, int]]]:
    consumer = object.__new__(TransformerConsumer)  # no broker: only the offset bookkeeping runs
    seeks: list[tuple[TP, int]] = []
    gaps: list[tuple[TP, int, int]] = []
    consumer._next = {} if next_offset is None else {P0: next_offset}
    consumer._reread = {}
    consumer._read_offset = {}
    consumer._commit_every = None
    consumer._n_acked = 0

    async def seek(tp: TP, offset: int) -> None:
        seeks.append((tp, offset))
        consumer._next[tp] = offset

    async def add_gap(tp: TP, start: int, end: int) -> None:
        gaps.append((tp, start, end))

    consumer.seek = seek  # type: ignore[method-assign,assignment]
    consumer._add_gap = add_gap  # type: ignore[method-assign,assignment]
    consumer._to_message = lambda tp, record: record  # type: ignore[method-assign]
    consumer.__dict__["log"] = SimpleNamespace(info=lambda *a: None, warning=lambda *a: None)
    return consumer, seeks, gaps


def _records(*offsets: int) -> list[Any]:
    return [SimpleNamespace(offset=o) for o in offsets]


class TestContiguousDelivery:
    async def test_records_from_the_next_offset_are_delivered_and_advance_it(self) -> None:
        consumer, seeks, _ = _consumer(5)
        fresh = await consumer._contiguous(P0, _records(5, 6, 7))
        assert [r.offset for r in fresh] == [5, 6, 7]
        assert consumer._next[P0] == 8
        assert not seeks

    async def test_records_already_delivered_are_skipped(self) -> None:
        consumer, _, _ = _consumer(7)
        fresh = await consumer._contiguous(P0, _records(5, 6, 7, 8))
        assert [r.offset for r in fresh] == [7, 8]

    async def test_a_jump_is_read_again_from_the_next_offset(self) -> None:
        """A fetch that raced a seek to the committed offsets: not one of its records is lost."""
        consumer, seeks, gaps = _consumer(5)
        fresh = await consumer._contiguous(P0, _records(5, 6, 40, 41))
        assert [r.offset for r in fresh] == [5, 6], "nothing past the hole is delivered"
        assert seeks == [(P0, 7)]
        assert not gaps, "the skipped offsets must not count as processed"

    async def test_the_same_jump_twice_means_the_records_are_gone(self) -> None:
        consumer, seeks, gaps = _consumer(5)
        assert await consumer._contiguous(P0, _records(40)) == []
        fresh = await consumer._contiguous(P0, _records(40, 41))
        assert [r.offset for r in fresh] == [40, 41]
        assert seeks == [(P0, 5)]
        assert gaps == [(P0, 5, 39)]
        assert consumer._next[P0] == 42

    async def test_without_a_committed_offset_the_first_record_sets_the_start(self) -> None:
        consumer, seeks, _ = _consumer(None)
        fresh = await consumer._contiguous(P0, _records(12, 13))
        assert [r.offset for r in fresh] == [12, 13]
        assert consumer._next[P0] == 14
        assert not seeks


async def test_partitions_without_a_committed_offset_are_read_from_the_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiokafka leaves them where fetching got to: records dropped for the seek would be lost."""
    changelog = TP("transformer.seen-changelog", 0)
    committed = {P0: None, TP(TOPIC, 1): 0, TP(TOPIC, 2): 5, changelog: None}
    sought: list[tuple[TP, int]] = []

    async def seek_to_committed(self: Any) -> Any:
        return committed

    async def seek(self: Any, tp: TP, offset: int) -> None:
        sought.append((tp, offset))

    monkeypatch.setattr(faust_aiokafka.Consumer, "seek_to_committed", seek_to_committed)
    monkeypatch.setattr(faust_aiokafka.Consumer, "seek", seek)
    consumer, _, _ = _consumer(None)
    consumer.__dict__["app"] = SimpleNamespace(dingdee_intake=SimpleNamespace(topic=TOPIC))
    assert await consumer.seek_to_committed() == committed
    assert sorted(sought) == [(P0, 0), (TP(TOPIC, 1), 0)], "the changelog is faust's business"
    assert consumer._next == {TP(TOPIC, 1): 0, TP(TOPIC, 2): 5}


async def test_a_broken_delivery_loop_is_reported_for_the_heartbeat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """faust would log the crash and keep a worker that never gets records again."""
    consumer, _, _ = _consumer(None)
    consumer.__dict__["app"] = SimpleNamespace(dingdee_intake=SimpleNamespace(topic=TOPIC))
    consumer.__dict__["_stopped"] = asyncio.Event()
    consumer.__dict__["_crashed"] = asyncio.Event()
    consumer.__dict__["diag"] = SimpleNamespace(set_flag=lambda _: None, unset_flag=lambda _: None)

    async def sleep(_: float) -> None:
        return None

    async def broken(_: float) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(consumer, "sleep", sleep)
    monkeypatch.setattr(consumer, "_wait_next_records", broken)
    fetcher = SimpleNamespace(_stopped=asyncio.Event())
    with pytest.raises(RuntimeError):
        await consumer._drain_messages(fetcher)  # type: ignore[arg-type]
    reason = consumer_failure(SimpleNamespace(consumer=consumer))  # type: ignore[arg-type]
    assert reason == "record delivery ended: RuntimeError('a bug')"


class TestFaustInternals:
    def test_present_in_the_pinned_versions(self) -> None:
        require_faust_internals(faust.App("internals-present", autodiscover=False))

    @pytest.mark.parametrize(
        ("owner", "name"),
        [
            (faust.transport.consumer.Consumer, "_drain_messages"),
            (faust.transport.consumer.Consumer, "_wait_next_records"),
            (faust.transport.consumer.Consumer, "_to_message"),
            (faust.transport.consumer.Consumer, "_add_gap"),
            (faust.transport.consumer.Consumer, "verify_event_path"),
            (faust.transport.consumer.Consumer, "verify_all_partitions_active"),
            (faust.transport.consumer.ThreadDelegateConsumer, "_new_consumer_thread"),
            (faust_aiokafka.AIOKafkaConsumerThread, "_create_worker_consumer"),
            (faust_aiokafka.Producer, "_ensure_producer"),
            (faust.tables.manager.TableManager, "changelog_topics"),
            ("monitor", "stream_inbound_time"),  # set per instance by Monitor.__init__
        ],
    )
    def test_a_missing_one_stops_the_start(
        self, monkeypatch: pytest.MonkeyPatch, owner: Any, name: str
    ) -> None:
        app = faust.App("internals-missing", autodiscover=False)
        monkeypatch.delattr(app.monitor if owner == "monitor" else owner, name)
        with pytest.raises(FaustInternalsError, match=name):
            require_faust_internals(app)

    @pytest.mark.parametrize(
        ("owner", "name"),
        [
            (faust.transport.consumer.Consumer, "_read_offset"),
            (faust.transport.consumer.Consumer, "_n_acked"),
            (faust.transport.consumer.ThreadDelegateConsumer, "_thread"),
            (mode.Service, "_stopped"),
        ],
    )
    def test_a_missing_attribute_declaration_stops_the_start(
        self, monkeypatch: pytest.MonkeyPatch, owner: type, name: str
    ) -> None:
        """Attributes faust sets in ``__init__`` are checked through their class annotations."""
        monkeypatch.delitem(owner.__annotations__, name)
        if name in vars(owner):
            monkeypatch.delattr(owner, name)
        with pytest.raises(FaustInternalsError, match=name):
            require_faust_internals(faust.App("internals-undeclared", autodiscover=False))

    def test_the_watch_fails_loudly_on_a_changed_path(self) -> None:
        """Not silently ``None`` (nothing detected) when aiokafka renames its coordinator."""
        aiokafka_consumer = SimpleNamespace(_fetcher=None)  # no _coordinator
        app: Any = SimpleNamespace(
            consumer=SimpleNamespace(
                delivery_failure=None, _thread=SimpleNamespace(_consumer=aiokafka_consumer)
            )
        )
        with pytest.raises(FaustInternalsError, match="_coordinator"):
            consumer_failure(app)
