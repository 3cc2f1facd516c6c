"""The broker frozen while the extractor emits: it waits, resumes from its checkpoint, loses none.

The producer's batches expire after a short ``request_timeout_ms`` while the broker (a private
one: the session broker must not freeze) is stopped, so the cycle fails with a Kafka error. The
poller goes back to its last acknowledged checkpoint: an instance whose snapshot was sent but never
acknowledged must be fetched and emitted again, not remembered as emitted.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from dingdee_common.kafka.clients import make_producer
from dingdee_common.kafka.topics import Topics, provision
from dingdee_common.observability.server import Health
from dingdee_common.settings import KafkaSettings, RetrySettings
from dingdee_dev.broker import ENV_BOOTSTRAP, EmbeddedBroker
from dingdee_extractor.app import ExtractorApp
from dingdee_extractor.dingtalk.client import DingTalkClient
from dingdee_extractor.flows import load_sources
from dingdee_extractor.metrics import ExtractorMetrics
from dingdee_extractor.settings import (
    DingTalkSettings,
    ExtractorSettings,
    OutageSettings,
    PollSettings,
)
from dingdee_sandbox.demo_org import DEMO_APP
from tests.helpers import demo_flows_file, poll_until, read_topic
from tests.integration.test_extractor_sandbox import (  # noqa: F401 - the sandbox fixture
    START_MS,
    Clock,
    Sandbox,
    sandbox,
    terminal_emitted,
)

pytestmark = [
    pytest.mark.fault,
    pytest.mark.skipif(
        bool(os.environ.get(ENV_BOOTSTRAP)), reason="freezing needs the embedded broker process"
    ),
]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def private_kafka(tmp_path: Path) -> AsyncIterator[tuple[EmbeddedBroker, KafkaSettings]]:
    broker = EmbeddedBroker(log_path=tmp_path / "broker.log")
    await asyncio.to_thread(broker.start)
    try:
        settings = KafkaSettings(bootstrap_servers=broker.bootstrap_servers, topic_prefix="fz.")
        await provision(settings)
        yield broker, settings
    finally:
        await asyncio.to_thread(broker.stop)


async def test_broker_frozen_mid_emit_rewinds_to_the_checkpoint_and_loses_nothing(
    private_kafka: tuple[EmbeddedBroker, KafkaSettings],
    sandbox: Sandbox,  # noqa: F811 - the fixture imported above
) -> None:
    broker, kafka = private_kafka
    assert broker.pid is not None
    ids = await sandbox.approved(30)
    clock = Clock(START_MS + 3600_000)
    await sandbox.set_clock(clock.now_ms)
    settings = ExtractorSettings(
        flows_file=demo_flows_file(),
        kafka=kafka,
        dingtalk=DingTalkSettings(
            base_url=sandbox.url,
            apps={"main": {"app_key": DEMO_APP.app_key, "app_secret": DEMO_APP.app_secret}},
        ),
        poll=PollSettings(settle_seconds=0, open_recheck_initial_seconds=1800),
        retry=RetrySettings(max_attempts=2, initial_backoff_seconds=0.01),
        outage=OutageSettings(initial_backoff_seconds=0.2, max_backoff_seconds=1.0),
    )
    sources = [
        s.model_copy(update={"start_date": date(2026, 11, 1)})
        for s in load_sources(settings.flows_file, frozenset({"main"}))
    ]
    registry, health = CollectorRegistry(), Health()
    metrics = ExtractorMetrics.create(registry)
    producer = make_producer(kafka, request_timeout_ms=2000)
    await producer.start()
    client = DingTalkClient(settings.dingtalk, metrics)
    app = ExtractorApp(settings, sources, producer, client, metrics, health, clock=clock)
    await app.setup()
    petty = next(p for p in app.pollers if p.source.flow == "petty-cash")
    watermark = petty.cp.watermark_ms
    stop = asyncio.Event()
    try:
        os.killpg(broker.pid, signal.SIGSTOP)
        try:
            cycle = asyncio.create_task(app.outage.cycle(petty, stop))

            def waiting() -> bool:
                return "Kafka unavailable" in health.ready()[1]

            await poll_until(waiting, timeout=30, what="/readyz saying Kafka is unavailable")
            assert petty.cp.watermark_ms == watermark, "back at the acknowledged checkpoint"
            assert petty.cp.emitted == {}, "nothing counts as emitted that was not acked"
            assert registry.get_sample_value("dingdee_dingtalk_up", {"app": "main"}) == 1
        finally:
            os.killpg(broker.pid, signal.SIGCONT)
        assert await asyncio.wait_for(cycle, timeout=60) is True
    finally:
        stop.set()
        await producer.stop()
        await client.aclose()

    assert health.ready() == (True, "ok")
    assert petty.cp.watermark_ms > watermark
    assert set(await terminal_emitted(kafka)) == set(ids), "every snapshot, none lost"
    assert await read_topic(kafka, Topics(kafka.topic_prefix).dlq("extractor")) == []
