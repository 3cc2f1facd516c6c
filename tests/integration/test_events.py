"""Stream-mode events against the DingTalk sandbox (its own process) and the real broker.

The official ``dingtalk-stream`` client connects to the sandbox's gateway; the extractor's own
listener turns finish events into snapshots within seconds, acks only after Kafka acked, and with
dropped, doubled and disconnected events the polling safety net still makes the set exact.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from dingdee_common.codec import decode_model
from dingdee_common.contracts import ApprovalSnapshot
from dingdee_common.kafka.clients import make_producer
from dingdee_common.kafka.topics import Topics
from dingdee_common.observability.server import Health
from dingdee_common.settings import KafkaSettings
from dingdee_dev.stack import start_sandbox
from dingdee_extractor.app import ExtractorApp
from dingdee_extractor.dingtalk.client import DingTalkClient
from dingdee_extractor.flows import load_sources
from dingdee_extractor.metrics import ExtractorMetrics
from dingdee_extractor.settings import (
    DingTalkSettings,
    EventsSettings,
    ExtractorSettings,
    PollSettings,
)
from dingdee_sandbox.demo_org import DEMO_APP, PROCESS_CODES
from tests.helpers import demo_flows_file, poll_until, read_topic

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def sandbox_url(tmp_path: Path) -> AsyncIterator[str]:
    proc, url = await start_sandbox("dingtalk", tmp_path, "--demo", "0")
    yield url
    proc.stop()


async def call(url: str, method: str, path: str, **kwargs: Any) -> Any:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.request(method, path, **kwargs)
        assert response.is_success, response.text
        return response.json()


async def test_official_stream_client_connects_receives_and_acks(sandbox_url: str) -> None:
    os.environ["DINGTALK_OPENAPI_ENDPOINT"] = sandbox_url
    import dingtalk_stream

    dingtalk_stream.DingTalkStreamClient.OPEN_CONNECTION_API = (
        sandbox_url + "/v1.0/gateway/connections/open"
    )
    received: list[dict[str, Any]] = []

    class Handler(dingtalk_stream.EventHandler):  # type: ignore[misc]
        async def process(self, event: Any) -> tuple[int, str]:
            received.append(event.data)
            return dingtalk_stream.AckMessage.STATUS_OK, "OK"

    client = dingtalk_stream.DingTalkStreamClient(
        dingtalk_stream.Credential(DEMO_APP.app_key, DEMO_APP.app_secret)
    )
    client.register_all_event_handler(Handler())
    # The official client swallows cancellation, retries forever and opens connections with
    # blocking ``requests``, so it runs on its own loop in a thread; its loop ends only on a
    # KeyboardInterrupt, which its next connection attempt raises once the test is done.
    loop = asyncio.new_event_loop()

    def serve() -> None:
        loop.run_until_complete(client.start())
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()

    def stop_reconnecting() -> None:
        raise KeyboardInterrupt

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        await _official_client_round_trip(sandbox_url, received)
    finally:
        client.open_connection = stop_reconnecting
        await call(sandbox_url, "POST", "/_sandbox/stream", json={"disconnect": True})
        await asyncio.to_thread(thread.join, 20)
    assert not thread.is_alive(), "the official client must stop with its test"


async def _official_client_round_trip(sandbox_url: str, received: list[dict[str, Any]]) -> None:

    async def connected() -> bool:
        return bool((await call(sandbox_url, "GET", "/_sandbox/stream"))["connections"] == 1)

    await poll_until(connected, timeout=30, what="the official client's connection")
    body = await call(
        sandbox_url,
        "POST",
        "/_sandbox/instances",
        json={"process_code": PROCESS_CODES["petty-cash"]},
    )
    await call(sandbox_url, "POST", f"/_sandbox/instances/{body['id']}/approve")

    async def acked() -> bool:
        state = await call(sandbox_url, "GET", "/_sandbox/stream")
        return bool(state["acked"] >= 2 and state["pending"] == 0)

    await poll_until(acked, timeout=20, what="the client's acks")
    assert [e["type"] for e in received] == ["start", "finish"]
    assert received[1]["processInstanceId"] == body["id"] and received[1]["result"] == "agree"


async def make_extractor(
    kafka: KafkaSettings,
    url: str,
    events: EventsSettings | None = None,
    *,
    clock: Callable[[], int] | None = None,
    start_date: date | None = None,
    flows: frozenset[str] | None = None,
) -> tuple[ExtractorApp, Any, Any]:
    settings = ExtractorSettings(
        flows_file=demo_flows_file(),
        kafka=kafka,
        dingtalk=DingTalkSettings(
            base_url=url,
            apps={"main": {"app_key": DEMO_APP.app_key, "app_secret": DEMO_APP.app_secret}},
        ),
        poll=PollSettings(settle_seconds=0),
        # by default the safety net re-checks open instances at once (7 days in production)
        events=events
        or EventsSettings(
            enabled=True, base_url=url, poll_interval_seconds=3600, open_recheck_initial_seconds=1
        ),
    )
    metrics = ExtractorMetrics.create(CollectorRegistry())
    producer = make_producer(kafka)
    await producer.start()
    client = DingTalkClient(settings.dingtalk, metrics)
    sources = [
        s.model_copy(update={"start_date": start_date or s.start_date})
        for s in load_sources(settings.flows_file, frozenset({"main"}))
        if flows is None or s.flow in flows
    ]
    app = ExtractorApp(settings, sources, producer, client, metrics, Health(), clock=clock)
    await app.setup()
    return app, producer, client


async def snapshots(kafka: KafkaSettings) -> list[ApprovalSnapshot]:
    return [
        decode_model(r.value, ApprovalSnapshot, supported_versions=frozenset({1}))
        for r in await read_topic(kafka, Topics(kafka.topic_prefix).approvals_raw)
    ]


async def test_events_trigger_fetches_fast_and_polling_catches_what_events_missed(
    kafka: KafkaSettings, sandbox_url: str
) -> None:
    rng = random.Random(4)
    await call(
        sandbox_url,
        "POST",
        "/_sandbox/stream",
        json={"drop_rate": 0.05, "duplicate_rate": 0.02, "redeliver_seconds": 2},
    )
    skew = [0]  # the extractor's clock runs ahead of real time by this much (ms)
    app, producer, client = await make_extractor(
        kafka, sandbox_url, clock=lambda: int(time.time() * 1000) + skew[0]
    )
    stop = asyncio.Event()
    runner = asyncio.create_task(app.run(stop))
    try:

        async def connected() -> bool:
            return bool((await call(sandbox_url, "GET", "/_sandbox/stream"))["connections"] == 1)

        await poll_until(connected, timeout=30, what="the extractor's event stream")
        ids = []
        for _ in range(60):
            body = await call(
                sandbox_url,
                "POST",
                "/_sandbox/instances",
                json={"process_code": PROCESS_CODES["petty-cash"]},
            )
            ids.append(body["id"])
        for n, pid in enumerate(ids):
            action = rng.choice(["approve"] * 8 + ["refuse", "terminate"])
            await call(sandbox_url, "POST", f"/_sandbox/instances/{pid}/{action}")
            if n == 30:
                await call(sandbox_url, "POST", "/_sandbox/stream", json={"disconnect": True})
            await asyncio.sleep(0.05)

        async def events_done() -> bool:
            state = await call(sandbox_url, "GET", "/_sandbox/stream")
            return bool(state["pending"] == 0 and state["connections"] == 1)

        await poll_until(events_done, timeout=60, what="every delivered event acked")
        before_sweep = {s.process_instance_id for s in await snapshots(kafka)}
        # two hours later: every creation time was covered by the connection (nothing to list),
        # and the approvals whose finish event was dropped are open instances due a re-check
        skew[0] = 2 * 3_600_000
        for poller in app.pollers:  # the safety net's next cycle
            await poller.cycle()
    finally:
        stop.set()
        await asyncio.wait_for(runner, timeout=30)
        await producer.stop()
        await client.aclose()

    finished = {
        i["id"]: i for i in (await call(sandbox_url, "GET", "/_sandbox/instances"))["instances"]
    }
    emitted = await snapshots(kafka)
    terminal = {s.process_instance_id: s.status for s in emitted if s.status != "RUNNING"}
    assert terminal == {pid: finished[pid]["status"] for pid in ids}
    by_event = [s for s in emitted if s.trigger == "event"]
    assert len(by_event) >= 0.8 * len(ids), "most approvals should arrive through events"
    assert before_sweep, "events alone must have brought snapshots before the sweep"
    steady = set(ids[:30])  # finished before the connection was dropped
    delays = sorted(
        s.fetched_at.timestamp() - finished[s.process_instance_id]["finish_time_ms"] / 1000
        for s in by_event
        if s.process_instance_id in steady
    )
    p99 = delays[min(len(delays) - 1, int(0.99 * len(delays)))]
    print(f"event-to-snapshot latency: p50 {delays[len(delays) // 2]:.3f}s, p99 {p99:.3f}s")
    assert p99 < 2.0, f"p99 event-to-snapshot latency {p99:.2f}s"


async def test_a_simulated_week_of_events_with_drops_duplicates_and_a_disconnect_is_exact(
    kafka: KafkaSettings, sandbox_url: str
) -> None:
    """A week on the sandbox clock with the events-mode defaults but a 3-day verification (so
    open instances are re-checked after 3 days, DESIGN §5), then quiet days until the last
    approval finished and was re-checked: the emitted set is exact and costs about a call each."""
    start_ms = 1_793_750_400_000  # 2026-11-05 00:00 CST
    hour = 3_600_000
    now = [start_ms]
    await call(sandbox_url, "POST", "/_sandbox/clock", json={"mode": "manual", "now_ms": start_ms})
    await call(
        sandbox_url,
        "POST",
        "/_sandbox/stream",
        json={"drop_rate": 0.05, "duplicate_rate": 0.02, "redeliver_seconds": 2},
    )
    app, producer, client = await make_extractor(
        kafka,
        sandbox_url,
        EventsSettings(enabled=True, base_url=sandbox_url, verify_interval_seconds=3 * 86_400),
        clock=lambda: now[0],
        start_date=date(2026, 11, 4),
        flows=frozenset({"petty-cash"}),
    )
    (poller,) = app.pollers
    stop = asyncio.Event()
    listeners = [asyncio.create_task(listener.run(stop)) for listener in app.listeners()]
    rng = random.Random(8)
    finishing: list[tuple[int, str, str]] = []

    http = httpx.AsyncClient(base_url=sandbox_url, timeout=30)

    async def sandbox(method: str, path: str, **kwargs: Any) -> Any:
        response = await http.request(method, path, **kwargs)
        assert response.is_success, response.text
        return response.json()

    async def settled() -> bool:
        state = await sandbox("GET", "/_sandbox/stream")
        return bool(state["pending"] == 0 and state["connections"] == 1)

    try:
        await poll_until(settled, timeout=30, what="the extractor's event stream")
        # a week of approvals, then quiet days: the longest approval (6 days), a re-check (3)
        for step in range(0, (7 + 6 + 4) * 24, 2):
            now[0] = start_ms + step * hour
            await sandbox("POST", "/_sandbox/clock", json={"now_ms": now[0]})
            for _ in range(rng.choice([2, 4, 4, 6]) if step < 7 * 24 else 0):
                body = await sandbox(
                    "POST",
                    "/_sandbox/instances",
                    json={"process_code": PROCESS_CODES["petty-cash"]},
                )
                takes = min(6 * 24 * hour, int(rng.lognormvariate(1.8, 1.0) * hour))
                action = rng.choice(["approve"] * 8 + ["refuse", "terminate"])
                finishing.append((now[0] + takes, body["id"], action))
            for due, pid, action in [f for f in finishing if f[0] <= now[0]]:
                await sandbox("POST", f"/_sandbox/instances/{pid}/{action}")
                finishing.remove((due, pid, action))
            if step == 84:
                await sandbox("POST", "/_sandbox/stream", json={"disconnect": True})
            await poll_until(settled, timeout=30, what="every delivered event acked", interval=0.01)
            if step % 12 == 0:  # the safety net's tick (every 10 min in production)
                await poller.cycle()
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*listeners), timeout=30)
        await producer.stop()
        await client.aclose()
        await http.aclose()

    instances = (
        await call(
            sandbox_url,
            "GET",
            "/_sandbox/instances",
            params={"process_code": PROCESS_CODES["petty-cash"]},
        )
    )["instances"]
    truth = {i["id"]: i["status"] for i in instances if i["status"] in ("COMPLETED", "TERMINATED")}
    assert len(truth) > 250 and not finishing
    emitted = await snapshots(kafka)
    terminal = [(s.process_instance_id, s.status) for s in emitted if s.status != "RUNNING"]
    assert dict(terminal) == truth, "every finished approval, with its final status"
    assert len(terminal) == len(set(terminal)), "a duplicate event never emits a snapshot twice"
    by_event = sum(1 for s in emitted if s.trigger == "event")
    assert by_event >= 0.85 * len(truth), "most approvals arrive through their event"
    stream = await call(sandbox_url, "GET", "/_sandbox/stream")
    assert stream["sent"] > stream["acked"] >= len(truth) * 0.9, stream
    metered = (await call(sandbox_url, "GET", "/_sandbox/stats"))["metered_calls"]
    print(f"simulated week: {metered} metered calls for {len(truth)} approvals")
    assert metered <= 1.5 * len(truth), "events make an approval cost about one call"
