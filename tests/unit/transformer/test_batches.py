"""The batch loop without a broker: fetches in, bills and dead letters out, dedup, ordered acks."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from dingdee_common.errors import FatalError
from dingdee_common.floodguard import FloodGuard
from dingdee_common.kafka import headers as hdr
from dingdee_common.kafka.dlq import ERROR_CLASS, DeadLetterPublisher
from dingdee_common.kafka.topics import Topics
from dingdee_common.observability.server import Health
from dingdee_transformer.batches import BatchLoop, Stage
from dingdee_transformer.flowspec import load_compiled
from dingdee_transformer.metrics import STAGE, TransformerMetrics
from dingdee_transformer.pipeline import Emit, Processor, Seen
from dingdee_transformer.settings import TransformerSettings
from tests.helpers import demo_flows_file
from tests.unit.transformer.fakes import TOPIC, FakeOffsets, FakeProducer, FakeSource, message
from tests.unit.transformer.samples import snapshot

ROOT = Path(__file__).resolve().parents[3]
TOPICS = Topics("t.")
BILLS = TOPICS.bills_ready
CHANGELOG = "t.transformer.seen-changelog"
FLOWS = load_compiled(demo_flows_file())


class Harness:
    """A :class:`BatchLoop` on fakes, with what it produced, acked and remembered."""

    def __init__(self, *batches: list[Any], producer: FakeProducer | None = None, **conf: Any):
        self.settings = TransformerSettings(
            flows_file=demo_flows_file(),
            retry={"max_attempts": 2, "initial_backoff_seconds": 0.01, "max_backoff_seconds": 0.01},
            **conf,
        )
        self.registry = CollectorRegistry()
        self.metrics = TransformerMetrics.create(self.registry)
        self.health = Health(stale_after=60)
        self.source = FakeSource(*batches)
        self.offsets = FakeOffsets()
        self.producer = producer or FakeProducer()
        self.store: dict[bytes, Any] = {}
        processor = Processor(
            FLOWS, self.metrics, source_topic=TOPIC, bills_topic=BILLS, group="transformer"
        )
        stage = Stage(
            self.metrics,
            self.health,
            FloodGuard(self.settings.flood_guard),
            DeadLetterPublisher(self.producer, TOPICS, STAGE),
        )
        self.loop = BatchLoop(
            self.settings,
            processor,
            stage,
            io=(self.source, self.offsets, self.producer),
            seen=self.store,
            topics=(BILLS, CHANGELOG),
        )

    async def run(self) -> BaseException | None:
        """Run until every batch was taken and settled (or the loop failed); the failure."""
        failures: list[BaseException] = []
        loop = asyncio.create_task(self.loop.run(failures.append))
        drained = asyncio.create_task(self.source.drained.wait())
        await asyncio.wait({loop, drained}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        for task in (loop, drained):
            task.cancel()
        await asyncio.gather(loop, drained, return_exceptions=True)
        return failures[0] if failures else None

    def bill_keys(self) -> list[bytes]:
        return [s.key or b"" for s in self.producer.to(BILLS)]


def _snap(n: int, fingerprint: str = "fp-1") -> Any:
    return snapshot(pid=f"pi-{n}", business_id=f"2026110312{n:011d}", fingerprint=fingerprint)


async def test_a_fetch_becomes_bills_remembered_on_the_source_partition_then_acked() -> None:
    h = Harness([message(_snap(1), 0, partition=0), message(_snap(2), 0, partition=1)])
    assert await h.run() is None
    assert len(h.bill_keys()) == 2
    assert h.offsets.acked == [(0, 0), (1, 0)]
    assert set(h.store) == {b"pi-1", b"pi-2"}
    changelog = {s.key: s.partition for s in h.producer.to(CHANGELOG)}
    assert changelog == {b"pi-1": 0, b"pi-2": 1}, "restored by the owner of the source partition"
    assert json.loads(h.producer.to(CHANGELOG)[0].value or b"")["fps"] == ["fp-1"]


async def test_a_snapshot_already_emitted_makes_no_second_bill() -> None:
    """Within a batch (still in flight), across batches, and from the table's store."""
    h = Harness(
        [message(_snap(1), 0), message(_snap(1), 1)],
        [message(_snap(1), 2), message(_snap(2), 3)],
    )
    h.store[b"pi-2"] = Seen(("fp-1",), "BILL-2").as_dict()
    assert await h.run() is None
    assert len(h.bill_keys()) == 1
    assert h.offsets.acked == [(0, 0), (0, 1), (0, 2), (0, 3)], "skipped records are acked too"


async def test_a_changed_snapshot_makes_another_bill_and_both_are_remembered() -> None:
    h = Harness([message(_snap(1, "fp-1"), 0)], [message(_snap(1, "fp-2"), 1)])
    assert await h.run() is None
    assert len(h.bill_keys()) == 2
    remembered = Seen.from_value(h.store[b"pi-1"])
    # the 审批编号 too: a later linked-change dead letter names it
    assert remembered == Seen(("fp-1", "fp-2"), h.bill_keys()[0].decode(), "202611031200000000001")


async def test_an_undecodable_record_is_dead_lettered_and_acked() -> None:
    h = Harness([message(b"not json", 0), message(_snap(1), 1)])
    assert await h.run() is None
    letters = h.producer.to(TOPICS.dlq(STAGE))
    assert len(letters) == 1
    assert hdr.get(letters[0].headers, ERROR_CLASS) == "poison"
    assert letters[0].value == b"not json"
    assert len(h.bill_keys()) == 1
    assert h.offsets.acked == [(0, 0), (0, 1)]


async def test_offsets_are_acked_in_delivery_order_across_batches() -> None:
    batches = [[message(_snap(n), n) for n in range(i, i + 3)] for i in (0, 3, 6)]
    h = Harness(*batches)
    assert await h.run() is None
    assert h.offsets.acked == [(0, n) for n in range(9)]


async def test_a_failed_record_batch_is_resent_bill_by_bill_logged_once_then_acked() -> None:
    h = Harness([message(_snap(n), n) for n in range(3)], producer=FakeProducer(fail_batches=1))
    with capture_logs() as logs:
        assert await h.run() is None
    assert len(h.bill_keys()) == 3
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
        "transformer.bill.send_failed"
    ]
    assert h.offsets.acked == [(0, 0), (0, 1), (0, 2)]


async def test_a_batch_that_cannot_be_published_stops_the_loop_unacked() -> None:
    producer = FakeProducer(fail_batches=3)  # the batch, then both resends of the budget
    h = Harness([message(_snap(1), 0)], producer=producer)
    failure = await h.run()
    assert isinstance(failure, FatalError)
    assert "could not publish" in str(failure)
    assert h.offsets.acked == []
    assert h.store == {}, "not remembered: the bill is emitted again after the restart"


async def test_the_flood_guard_stops_the_loop_and_only_processed_records_are_acked() -> None:
    h = Harness(
        [message(b"bad", n) for n in range(5)],
        flood_guard={"max_consecutive": 3, "min_records": 100},
    )
    h.loop.stopped.set()  # the worker stopping: the halted loop lets go
    assert await h.run() is None
    assert h.offsets.acked == [(0, 0), (0, 1), (0, 2)], "the rest is read again after a restart"
    ready, reason = h.health.ready()
    assert not ready
    assert reason.startswith("flood guard tripped")


@pytest.mark.parametrize("resends_fail", [False, True])
async def test_confirm_resends_one_bill_within_the_budget(resends_fail: bool) -> None:
    h = Harness(producer=FakeProducer(fail_batches=2 if resends_fail else 0))
    batch: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    batch.set_exception(ConnectionError("broker gone"))
    emit = Emit("petty-cash", "pi-7", b"BYJ7", b"{}", [], Seen(("fp",), "BYJ7"))
    if resends_fail:
        with pytest.raises(FatalError, match="could not publish"):
            await h.loop._confirm(emit, batch, set())
        assert h.producer.fail_batches == 0, "both attempts of the budget were used"
    else:
        await h.loop._confirm(emit, batch, set())
        assert h.bill_keys() == [b"BYJ7"]


async def test_the_lag_left_behind_a_batch_is_measured_from_the_partition_ends() -> None:
    h = Harness([message(_snap(n), n) for n in range(3)])
    h.offsets.ends = {message(_snap(0), 0).tp: 10}
    assert await h.run() is None
    lag = h.registry.get_sample_value(
        "dingdee_consumer_lag_records", {"stage": STAGE, "topic": TOPIC}
    )
    assert lag == 7, "offsets 3..9 are still to be read"
