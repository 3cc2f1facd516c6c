"""The poller's cycle without a broker or DingTalk: a fake DingTalk, the shared Kafka fakes.

What the integration tests show through the sandbox and the broker (tests/integration/
test_extractor_sandbox.py), here on the poller alone: what is fetched, emitted, re-checked,
dead-lettered and checkpointed, and that a broker failure rewinds to the last checkpoint.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError
from prometheus_client import CollectorRegistry

from dingdee_common.contracts import Checkpoint
from dingdee_common.errors import PermanentError, TransientError
from dingdee_common.kafka.dlq import DeadLetterPublisher
from dingdee_common.kafka.topics import Topics
from dingdee_common.settings import RetrySettings
from dingdee_extractor.dingtalk.client import DingTalkUnavailableError, IdPage
from dingdee_extractor.emitter import Emitter
from dingdee_extractor.flows import FlowSource
from dingdee_extractor.metrics import ExtractorMetrics
from dingdee_extractor.poller import FlowPoller
from dingdee_extractor.settings import PollSettings
from tests.kafka_fakes import FakeProducer

RAW = "approvals.raw"
TOPICS = Topics("")
SOURCE = FlowSource(
    flow="petty-cash", app="main", process_code="PROC-1", start_date=date(2026, 11, 1)
)
NOW = int(datetime(2026, 11, 3, 4, 0, tzinfo=UTC).timestamp() * 1000)  # 12:00 in Shanghai
HOUR = 3_600_000


def _instance(status: str, created: str = "2026-11-03 10:00:00") -> dict[str, Any]:
    return {"status": status, "result": "agree", "create_time": created, "title": "t"}


class FakeDingTalk:
    """``listids`` over the instances' creation times, 20 ids a page; ``get`` by id."""

    def __init__(self, instances: dict[str, dict[str, Any]], created_ms: int) -> None:
        self.instances = instances
        self.created_ms = created_ms
        self.gets: list[str] = []
        self.refuse: set[str] = set()  # ids whose get DingTalk refuses (permanent)
        self.down = False

    async def listids(
        self, app: str, process_code: str, start_ms: int, end_ms: int, cursor: int
    ) -> IdPage:
        if self.down:
            raise TransientError("DingTalk down", code="down")
        ids = sorted(self.instances) if start_ms <= self.created_ms <= end_ms else []
        page = ids[cursor : cursor + 20]
        return IdPage(page, cursor + 20 if cursor + 20 < len(ids) else None)

    async def get(self, app: str, instance_id: str) -> dict[str, Any]:
        self.gets.append(instance_id)
        if instance_id in self.refuse:
            raise PermanentError("no such instance", code="notfound")
        return dict(self.instances[instance_id])

    def answered_since(self, app: str, since: float) -> bool:
        return not self.down


class Harness:
    def __init__(self, dingtalk: FakeDingTalk, producer: FakeProducer | None = None) -> None:
        self.now = NOW
        self.dingtalk = dingtalk
        self.producer = producer or FakeProducer()
        self.saved: list[Checkpoint] = []
        self.registry = CollectorRegistry()
        self.poller = self.build(None)

    def build(self, checkpoint: Checkpoint | None) -> FlowPoller:
        return FlowPoller(
            SOURCE,
            checkpoint,
            client=self.dingtalk,
            emitter=Emitter(self.producer, RAW),
            save=self.save,
            dlq=DeadLetterPublisher(self.producer, TOPICS, "extractor"),
            metrics=ExtractorMetrics.create(self.registry),
            poll=PollSettings(detail_failures_before_dlq=2),
            retry=RetrySettings(initial_backoff_seconds=0.001, max_attempts=2),
            clock=lambda: self.now,
        )

    async def save(self, cp: Checkpoint) -> None:
        self.saved.append(cp)

    def emitted(self) -> list[str]:
        return [(s.key or b"").decode() for s in self.producer.to(RAW)]


async def test_a_cycle_emits_each_instance_once_and_re_checks_the_open_one_when_due() -> None:
    created = NOW - 2 * HOUR
    dingtalk = FakeDingTalk(
        {"pi-1": _instance("COMPLETED"), "pi-2": _instance("RUNNING")}, created_ms=created
    )
    h = Harness(dingtalk)
    await h.poller.cycle()

    assert sorted(dingtalk.gets) == ["pi-1", "pi-2"]
    assert sorted(h.emitted()) == ["pi-1", "pi-2"]
    cp = h.saved[-1]
    assert set(cp.emitted) == {"pi-1"} and set(cp.open_instances) == {"pi-2"}
    next_check = cp.open_instances["pi-2"].next_check_ms
    assert next_check > NOW

    await h.poller.cycle()  # listed again (overlap, sweep): known ids cost no get
    assert sorted(dingtalk.gets) == ["pi-1", "pi-2"]
    assert len(h.emitted()) == 2

    dingtalk.instances["pi-2"] = _instance("COMPLETED")
    h.now = next_check
    await h.poller.cycle()
    assert sorted(dingtalk.gets) == ["pi-1", "pi-2", "pi-2"]
    assert h.emitted()[-1] == "pi-2"
    assert not h.saved[-1].open_instances and set(h.saved[-1].emitted) == {"pi-1", "pi-2"}


async def test_a_refused_get_is_kept_and_dead_lettered_once_with_its_class() -> None:
    dingtalk = FakeDingTalk({"pi-1": _instance("COMPLETED")}, created_ms=NOW - 2 * HOUR)
    dingtalk.refuse.add("pi-1")
    h = Harness(dingtalk)
    for _ in range(3):
        await h.poller.cycle()
        h.now = h.saved[-1].open_instances["pi-1"].next_check_ms

    assert dingtalk.gets == ["pi-1"] * 3
    assert h.emitted() == []
    letters = h.producer.to(TOPICS.dlq("extractor"))
    assert len(letters) == 1, "dead-lettered once, at the second failure"
    assert dict(letters[0].headers)["dlq-error-class"] == b"permanent"
    assert h.saved[-1].open_instances["pi-1"].failures == 3, "kept: nothing is lost"
    dead = h.registry.get_sample_value(
        "dingdee_records_out_total",
        {"stage": "extractor", "flow": "petty-cash", "outcome": "dead_lettered"},
    )
    assert dead == 1


async def test_dingtalk_down_stops_the_cycle_before_any_checkpoint() -> None:
    dingtalk = FakeDingTalk({"pi-1": _instance("COMPLETED")}, created_ms=NOW - 2 * HOUR)
    dingtalk.down = True
    h = Harness(dingtalk)
    with pytest.raises(DingTalkUnavailableError):
        await h.poller.cycle()
    assert h.saved == [] and dingtalk.gets == []
    assert h.poller.calls == 2, "every attempt is a metered call"


async def test_a_broker_failure_rewinds_to_the_last_checkpoint() -> None:
    dingtalk = FakeDingTalk({"pi-1": _instance("COMPLETED")}, created_ms=NOW - 2 * HOUR)
    producer = FakeProducer()
    producer.unacked = True
    h = Harness(dingtalk, producer=producer)
    start = h.poller.cp
    with pytest.raises(KafkaTimeoutError):
        await h.poller.cycle()
    assert h.saved == [], "nothing acknowledged, nothing checkpointed"
    assert h.poller.cp == start and not h.poller.cp.emitted

    producer.unacked = False  # the broker is back: the same work again, from the checkpoint
    await h.poller.cycle()
    assert dingtalk.gets == ["pi-1", "pi-1"], "not remembered as emitted: fetched again"
    assert h.emitted() == ["pi-1"]
    assert set(h.saved[-1].emitted) == {"pi-1"}
