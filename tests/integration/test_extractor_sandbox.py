"""The extractor against the DingTalk sandbox and the real broker: nothing missed, nothing wasted.

The sandbox runs as its own process on a manual clock; the extractor's pollers run in this process
on the same clock, cycle by cycle, so days of approvals pass in seconds.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from dingdee_common.codec import decode_model
from dingdee_common.contracts import ApprovalSnapshot
from dingdee_common.devstack import start_sandbox
from dingdee_common.kafka.clients import make_producer
from dingdee_common.kafka.topics import Topics
from dingdee_common.observability.server import Health
from dingdee_common.procs import ManagedProcess
from dingdee_common.settings import KafkaSettings
from dingdee_extractor.app import ExtractorApp
from dingdee_extractor.dingtalk.client import DingTalkClient
from dingdee_extractor.flows import load_sources
from dingdee_extractor.metrics import ExtractorMetrics
from dingdee_extractor.settings import DingTalkSettings, ExtractorSettings, PollSettings
from dingdee_sandbox.demo_org import DEMO_APP, PROCESS_CODES
from tests.helpers import read_topic

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HOUR_MS = 3_600_000
START_MS = 1_793_750_400_000  # 2026-11-05 00:00 CST


@dataclass
class Sandbox:
    url: str
    proc: ManagedProcess

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as client:
            response = await client.request(method, path, **kwargs)
            assert response.is_success, f"{method} {path}: {response.status_code} {response.text}"
            return response.json()

    async def set_clock(self, now_ms: int) -> None:
        await self.call("POST", "/_sandbox/clock", json={"mode": "manual", "now_ms": now_ms})

    async def instances(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for code in PROCESS_CODES.values():
            data = await self.call("GET", "/_sandbox/instances", params={"process_code": code})
            found += data["instances"]
        return found


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    proc, url = await start_sandbox("dingtalk", tmp_path, "--demo", "0", "--seed", "1")
    box = Sandbox(url, proc)
    await box.set_clock(START_MS)
    yield box
    proc.stop()


class Clock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


async def make_app(
    kafka: KafkaSettings,
    sandbox: Sandbox,
    clock: Clock,
    registry: CollectorRegistry,
    days: int | None = None,
) -> tuple[ExtractorApp, Any, DingTalkClient]:
    settings = ExtractorSettings(
        flows_file=ROOT / "config" / "flows.yaml",
        kafka=kafka,
        dingtalk=DingTalkSettings(
            base_url=sandbox.url,
            apps={DEMO_APP.name: {"app_key": DEMO_APP.app_key, "app_secret": DEMO_APP.app_secret}},
            qps=18,
        ),
        poll=PollSettings(
            settle_seconds=0,
            open_recheck_initial_seconds=1800,
            open_recheck_max_seconds=12 * 3600,
            sweep_interval_seconds=24 * 3600,
        ),
    )
    start = (
        date(2026, 11, 1)
        if days is None
        else (datetime.fromtimestamp(clock.now_ms / 1000, UTC).date() - timedelta(days=days))
    )
    sources = [
        s.model_copy(update={"start_date": start})
        for s in load_sources(settings.flows_file, frozenset(settings.dingtalk.apps))
    ]
    metrics = ExtractorMetrics.create(registry)
    producer = make_producer(kafka)
    await producer.start()
    client = DingTalkClient(settings.dingtalk, metrics)
    app = ExtractorApp(settings, sources, producer, client, metrics, Health(), clock=clock)
    await app.setup()
    return app, producer, client


async def terminal_emitted(kafka: KafkaSettings) -> dict[str, str]:
    """Last emitted status per instance id, from approvals.raw."""
    last: dict[str, str] = {}
    for record in await read_topic(kafka, Topics(kafka.topic_prefix).approvals_raw):
        snap = decode_model(record.value, ApprovalSnapshot, supported_versions=frozenset({1}))
        last[snap.process_instance_id] = f"{snap.status}/{snap.result or ''}/{snap.biz_action}"
    return last


async def test_evolving_approvals_are_emitted_exactly_with_their_final_status(
    kafka: KafkaSettings, sandbox: Sandbox
) -> None:
    rng = random.Random(7)
    clock = Clock(START_MS)
    created: list[str] = []
    for i in range(160):
        code = PROCESS_CODES["petty-cash" if i % 8 else "department-sync"]
        clock.now_ms = START_MS + i * 60_000
        await sandbox.set_clock(clock.now_ms)
        body = await sandbox.call("POST", "/_sandbox/instances", json={"process_code": code})
        created.append(body["id"])
    late = set(rng.sample(created, 16))  # ~10 % finish only days later
    approved: list[str] = []
    for pid in created:
        if pid not in late:
            action = rng.choice(["approve"] * 8 + ["refuse", "terminate"])
            await sandbox.call("POST", f"/_sandbox/instances/{pid}/{action}")
            if action == "approve":
                approved.append(pid)

    app, producer, client = await make_app(kafka, sandbox, clock, CollectorRegistry())
    revocations: list[str] = []
    try:
        for day in range(1, 5):
            for hour in range(0, 24, 6):
                clock.now_ms = START_MS + day * 24 * HOUR_MS + hour * HOUR_MS
                await sandbox.set_clock(clock.now_ms)
                if day == 2 and hour == 0:
                    for pid in sorted(late):
                        await sandbox.call("POST", f"/_sandbox/instances/{pid}/approve")
                    for pid in approved[:3]:
                        linked = await sandbox.call("POST", f"/_sandbox/instances/{pid}/revoke")
                        revocations.append(linked["id"])
                if day == 3 and hour == 12:
                    for pid in revocations:
                        await sandbox.call("POST", f"/_sandbox/instances/{pid}/approve")
                for poller in app.pollers:
                    await poller.cycle()
    finally:
        await producer.stop()
        await client.aclose()

    truth = {
        i["id"]: f"{i['status']}/{i['result'] or ''}/{i['biz_action']}"
        for i in await sandbox.instances()
        if i["status"] in ("COMPLETED", "TERMINATED")
    }
    emitted = await terminal_emitted(kafka)
    assert {k: v for k, v in emitted.items() if k in truth} == truth
    assert set(truth) <= set(emitted), "a terminal approval was never emitted"
    assert set(revocations) <= set(truth), "approved revocations are terminal approvals too"
    assert all(emitted[r].endswith("/REVOKE") for r in revocations)
    requests = (await sandbox.call("GET", "/_sandbox/requests"))["requests"]
    gets = [r for r in requests if r["path"].endswith("/processinstance/get")]
    assert len(gets) < 3 * len(truth), "open instances must not be re-fetched every cycle"


async def test_long_history_with_transient_faults_is_read_in_legal_windows(
    kafka: KafkaSettings, sandbox: Sandbox
) -> None:
    rng = random.Random(3)
    now = START_MS + 40 * 24 * HOUR_MS
    created = []
    for _ in range(120):
        at = now - rng.randint(1, 250) * 24 * HOUR_MS
        body = await sandbox.call(
            "POST",
            "/_sandbox/instances",
            json={"process_code": PROCESS_CODES["petty-cash"], "create_time_ms": at},
        )
        created.append(body["id"])
        await sandbox.call("POST", f"/_sandbox/instances/{body['id']}/approve")
    await sandbox.set_clock(now)
    await sandbox.call("POST", "/_sandbox/faults", json={"busy_rate": 0.15, "http_500_rate": 0.05})
    clock = Clock(now)
    app, producer, client = await make_app(kafka, sandbox, clock, CollectorRegistry(), days=300)
    try:
        for poller in app.pollers:
            await poller.cycle()
    finally:
        await producer.stop()
        await client.aclose()

    emitted = await terminal_emitted(kafka)
    assert set(emitted) == set(created), "every approval of the history, nothing else"
    requests = (await sandbox.call("GET", "/_sandbox/requests"))["requests"]
    assert any(r["errcode"] == -1 for r in requests), "the faults must have fired"
    windows = [r["body"] for r in requests if r["path"].endswith("/listids") and r["body"]]
    day = 24 * HOUR_MS
    assert all(w["end_time"] - w["start_time"] < 120 * day for w in windows)
    assert all(w["start_time"] >= now - 365 * day for w in windows)
