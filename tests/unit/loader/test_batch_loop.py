"""The loader's batch loop without a broker or Kingdee (``tests/unit/loader/fakes.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from dingdee_common import codec
from dingdee_common.contracts.v1 import BillReady, BillResult, SourceRef
from dingdee_common.kafka import headers as hdr
from dingdee_common.kafka.topics import Topics
from dingdee_common.observability.server import Health
from dingdee_common.settings import RetrySettings
from dingdee_loader.app import LoaderApp
from dingdee_loader.kingdee.models import RowKind, RowResult
from dingdee_loader.metrics import LoaderMetrics
from dingdee_loader.settings import BackpressureSettings, KingdeeSettings, LoaderSettings
from tests.unit.loader.fakes import TP0, FakeConsumer, FakeKingdee, FakeProducer, record

KINGDEE = KingdeeSettings(
    server_url="http://kingdee/k3cloud", acct_id="a", username="u", app_id="x_y", app_secret="s"
)


def bill(number: str) -> bytes:
    ready = BillReady(
        flow="petty-cash",
        bill_key=number,
        form_id="ER_ExpReimbursement",
        model={"FBillNo": number},
        source=SourceRef(process_instance_id=f"pi-{number}"),
    )
    return codec.encode_model(ready)


async def run_until_drained(app: LoaderApp, consumer: FakeConsumer) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    await asyncio.wait_for(consumer.drained.wait(), timeout=10)
    stop.set()
    await asyncio.wait_for(task, timeout=10)


async def test_a_batch_is_saved_dead_lettered_and_committed_without_a_broker() -> None:
    headers = hdr.build("petty-cash", "pi")
    consumer = FakeConsumer(
        [
            record(0, bill("B1"), headers),
            record(1, bill("B2"), headers),
            record(2, b"not json", headers),
            record(3, bill("B3"), headers),
        ]
    )
    producer = FakeProducer()
    kingdee = FakeKingdee(
        rows={
            "B1": RowResult(RowKind.SAVED, kingdee_id=11, number="B1"),
            "B2": RowResult(RowKind.REJECTED, message="amount missing"),
            "B3": RowResult(RowKind.EXISTS, message="duplicate"),
        },
    )
    registry = CollectorRegistry()
    metrics = LoaderMetrics.create(registry)
    settings = LoaderSettings(kingdee=KINGDEE, batch_linger_seconds=0.01)
    app = LoaderApp(settings, metrics, Health(), consumer, producer, kingdee)
    topics = Topics(settings.kafka.topic_prefix)
    await app.assigned({TP0})
    await run_until_drained(app, consumer)

    assert kingdee.saves == [["B1", "B2", "B3"]]
    results = {
        r.bill_key: r.outcome.value
        for r in (
            codec.decode_model(s.value, BillResult, supported_versions=frozenset({1}))
            for s in producer.to(topics.bills_result)
        )
    }
    assert results == {"B1": "saved", "B2": "failed", "B3": "already_exists"}
    letters = [dict(s.headers)["dlq-error-class"] for s in producer.to(topics.dlq("loader"))]
    assert sorted(letters) == [b"permanent", b"poison"]
    assert consumer.committed[-1] == {TP0: 4}, "every record resolved: commit past the last"
    out = {
        outcome: registry.get_sample_value(
            "dingdee_records_out_total",
            {"stage": "loader", "flow": "petty-cash", "outcome": outcome},
        )
        for outcome in ("saved", "already_exists", "dead_lettered")
    }
    assert out == {"saved": 1, "already_exists": 1, "dead_lettered": 1}


def _ready(health: Health) -> bool:
    return health.not_ready_reason is None


async def _until(done: Callable[[], bool], what: str) -> None:
    for _ in range(1000):
        if done():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_kingdee_outage_pauses_and_holds_the_bills_then_resumes_without_a_broker() -> None:
    headers = hdr.build("petty-cash", "pi")
    consumer = FakeConsumer([record(0, bill("B1"), headers), record(1, bill("B2"), headers)])
    producer = FakeProducer()
    saved = RowResult(RowKind.SAVED, kingdee_id=1)
    kingdee = FakeKingdee(rows={"B1": saved, "B2": saved}, down=True)
    settings = LoaderSettings(
        kingdee=KINGDEE,
        batch_linger_seconds=0.01,
        retry=RetrySettings(initial_backoff_seconds=0.001, max_attempts=3),
        backpressure=BackpressureSettings(
            pause_after_failures=2,
            probe_initial_backoff_seconds=0.01,
            probe_max_backoff_seconds=0.02,
        ),
    )
    health = Health()
    app = LoaderApp(
        settings, LoaderMetrics.create(CollectorRegistry()), health, consumer, producer, kingdee
    )
    topics = Topics(settings.kafka.topic_prefix)
    await app.assigned({TP0})
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    try:
        await _until(lambda: consumer.paused() == {TP0}, "the pause")
        assert not _ready(health), "not ready while Kingdee is down"
        assert producer.sent == [], "an outage is back-pressure: no result, no dead letter"
        assert all(TP0 not in c or c[TP0] == 0 for c in consumer.committed)

        kingdee.down = False
        await _until(lambda: len(producer.to(topics.bills_result)) == 2, "both results")
        await _until(lambda: consumer.committed[-1:] == [{TP0: 2}], "the commit")
        assert consumer.paused() == set() and _ready(health)
        assert producer.to(topics.dlq("loader")) == []
        assert kingdee.saves[-1] == ["B1", "B2"], "the held bills, sent again once Kingdee answers"
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
