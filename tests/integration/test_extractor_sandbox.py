"""The extractor against the DingTalk sandbox and the real broker: nothing missed, nothing wasted.

The sandbox runs as its own process on a manual clock; the extractor's pollers run in this process
on the same clock, cycle by cycle, so days of approvals pass in seconds.
"""

from __future__ import annotations

import asyncio
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
from dingdee_common.kafka.clients import make_producer
from dingdee_common.kafka.topics import Topics
from dingdee_common.observability.server import Health
from dingdee_common.settings import KafkaSettings, RetrySettings
from dingdee_dev.procs import ManagedProcess
from dingdee_dev.stack import start_sandbox
from dingdee_extractor.app import ExtractorApp
from dingdee_extractor.dingtalk.client import DingTalkClient, DingTalkUnavailableError
from dingdee_extractor.flows import load_sources
from dingdee_extractor.metrics import ExtractorMetrics
from dingdee_extractor.settings import (
    DingTalkSettings,
    ExtractorSettings,
    OutageSettings,
    PollSettings,
)
from dingdee_sandbox.demo_org import DEMO_APP, PROCESS_CODES
from tests.helpers import demo_flows_file, dingdee, poll_until, read_topic

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HOUR_MS = 3_600_000
START_MS = 1_793_750_400_000  # 2026-11-05 00:00 CST
FAST_RETRY = RetrySettings(max_attempts=2, initial_backoff_seconds=0.01, deadline_seconds=5)


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

    async def approved(self, count: int) -> list[str]:
        """Ids of ``count`` new petty-cash instances, approved at once."""
        ids = []
        for _ in range(count):
            body = await self.call(
                "POST", "/_sandbox/instances", json={"process_code": PROCESS_CODES["petty-cash"]}
            )
            await self.call("POST", f"/_sandbox/instances/{body['id']}/approve")
            ids.append(body["id"])
        return ids

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
    budget: int | None = None,
    retry: RetrySettings | None = None,
    outage: OutageSettings | None = None,
    health: Health | None = None,
    **poll: Any,
) -> tuple[ExtractorApp, Any, DingTalkClient]:
    app_settings = {"app_key": DEMO_APP.app_key, "app_secret": DEMO_APP.app_secret}
    settings = ExtractorSettings(
        flows_file=demo_flows_file(),
        kafka=kafka,
        dingtalk=DingTalkSettings(
            base_url=sandbox.url,
            apps={DEMO_APP.name: {**app_settings, "monthly_call_budget": budget}},
            qps=18,
        ),
        poll=PollSettings(
            **{
                "settle_seconds": 0,
                "open_recheck_initial_seconds": 1800,
                "open_recheck_max_seconds": 12 * 3600,
                "sweep_interval_seconds": 24 * 3600,
                **poll,
            }
        ),
        retry=retry or RetrySettings(max_attempts=5, deadline_seconds=60),
        outage=outage or OutageSettings(),
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
    app = ExtractorApp(
        settings, sources, producer, client, metrics, health or Health(), clock=clock
    )
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
        # a get that failed past its retry budget is re-checked on the schedule, not lost
        clock.now_ms += 24 * HOUR_MS
        await sandbox.set_clock(clock.now_ms)
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


async def test_sweep_finds_instances_the_listing_showed_late(
    kafka: KafkaSettings, sandbox: Sandbox
) -> None:
    """DingTalk's listing index can lag creation: a window read too early misses the id, and
    only the compensation sweep, re-listing settled creation times once, brings it."""
    await sandbox.call("POST", "/_sandbox/faults", json={"listing_delay_seconds": 1800})
    clock = Clock(START_MS)
    registry = CollectorRegistry()
    app, producer, client = await make_app(
        kafka, sandbox, clock, registry, sweep_interval_seconds=3600, sweep_delay_seconds=3600
    )
    created = []
    try:
        # every 10 minutes for three hours; a new approval in each of the first two hours
        for step in range(19):
            clock.now_ms = START_MS + step * 10 * 60_000
            await sandbox.set_clock(clock.now_ms)
            if step < 12:
                body = await sandbox.call(
                    "POST",
                    "/_sandbox/instances",
                    json={"process_code": PROCESS_CODES["petty-cash"]},
                )
                await sandbox.call("POST", f"/_sandbox/instances/{body['id']}/approve")
                created.append(body["id"])
            for poller in app.pollers:
                await poller.cycle()
    finally:
        await producer.stop()
        await client.aclose()

    triggers = {
        snap.process_instance_id: snap.trigger
        for record in await read_topic(kafka, Topics(kafka.topic_prefix).approvals_raw)
        if (snap := decode_model(record.value, ApprovalSnapshot, supported_versions=frozenset({1})))
    }
    assert set(triggers) == set(created)
    assert set(triggers.values()) == {"sweep"}, "the windows read each one before it was listed"
    emitted = await terminal_emitted(kafka)
    assert set(emitted) == set(created)
    found = registry.get_sample_value("dingdee_extractor_sweep_found_total", {"flow": "petty-cash"})
    assert found == len(created)
    stage = {"stage": "extractor", "flow": "petty-cash"}
    assert registry.get_sample_value("dingdee_records_in_total", stage) == len(created)
    out = registry.get_sample_value("dingdee_records_out_total", {**stage, "outcome": "emitted"})
    assert out == len(created)
    petty = next(p for p in app.pollers if p.source.flow == "petty-cash")
    assert petty.cp.swept_until_ms > START_MS + 11 * 10 * 60_000, "the sweep covered them"


async def test_an_instance_whose_detail_keeps_failing_is_dead_lettered_and_not_lost(
    kafka: KafkaSettings, sandbox: Sandbox
) -> None:
    clock = Clock(START_MS)
    ids = await sandbox.approved(5)
    broken = ids[2]
    await sandbox.call("POST", "/_sandbox/faults", json={"failing_instance_ids": [broken]})
    app, producer, client = await make_app(
        kafka,
        sandbox,
        clock,
        CollectorRegistry(),
        retry=FAST_RETRY,
        open_recheck_initial_seconds=600,
        detail_failures_before_dlq=3,
    )
    petty = next(p for p in app.pollers if p.source.flow == "petty-cash")
    try:
        for step in range(1, 8):  # failures back off: 10, 20, 30 minutes…
            clock.now_ms = START_MS + step * 3600_000
            await sandbox.set_clock(clock.now_ms)
            await petty.cycle()
        letters = await read_topic(kafka, Topics(kafka.topic_prefix).dlq("extractor"))
        assert set(await terminal_emitted(kafka)) == set(ids) - {broken}, "the others flowed"
        assert broken in petty.cp.open_instances, "kept for retrying, not dropped"
        await sandbox.call("POST", "/_sandbox/faults", json={"failing_instance_ids": []})
        clock.now_ms += 24 * 3600_000
        await sandbox.set_clock(clock.now_ms)
        await petty.cycle()
    finally:
        await producer.stop()
        await client.aclose()

    assert [r.key for r in letters] == [broken.encode()], "one dead letter, for visibility"
    headers = {k: v.decode() for k, v in letters[0].headers}
    assert headers["dlq-stage"] == "extractor"
    assert headers["dlq-error-class"] == "exhausted"
    assert headers["dlq-attempts"] == "3"
    assert broken in headers["dlq-error-message"]
    assert "petty-cash" in headers["dlq-error-message"]
    assert set(await terminal_emitted(kafka)) == set(ids), "it arrives once DingTalk answers"


@pytest.mark.parametrize(
    ("knob", "answer"),
    [  # contract §5.3 (-1, gateway errors) and §5.2 (global throttling 88/90002), knobs of §7.6
        ("busy_rate", "errcode -1"),
        ("gateway_rate", "HTTP 50"),
        ("global_qps_rate", "90002"),
    ],
)
async def test_dingtalk_failing_every_call_is_waited_out_not_dead_lettered(
    kafka: KafkaSettings, sandbox: Sandbox, knob: str, answer: str
) -> None:
    """Every call refused: the cycle stops at its checkpoint, waits, and resumes exactly."""
    clock = Clock(START_MS)
    ids = await sandbox.approved(6)
    registry, health = CollectorRegistry(), Health()
    app, producer, client = await make_app(
        kafka,
        sandbox,
        clock,
        registry,
        retry=FAST_RETRY,
        outage=OutageSettings(initial_backoff_seconds=0.05, max_backoff_seconds=0.2),
        health=health,
        open_recheck_initial_seconds=600,
        detail_failures_before_dlq=1,
    )
    petty = next(p for p in app.pollers if p.source.flow == "petty-cash")
    watermark = petty.cp.watermark_ms
    stop = asyncio.Event()

    def up() -> float | None:
        return registry.get_sample_value("dingdee_dingtalk_up", {"app": DEMO_APP.name})

    try:
        clock.now_ms = START_MS + 3600_000
        await sandbox.set_clock(clock.now_ms)
        await sandbox.call("POST", "/_sandbox/faults", json={knob: 1.0})
        cycle = asyncio.create_task(app.outage.cycle(petty, stop))
        await poll_until(lambda: up() == 0, timeout=30, what="dingdee_dingtalk_up 0")
        assert registry.get_sample_value("dingdee_ready", {"stage": "extractor"}) == 0
        ready, reason = health.ready()
        assert not ready and "DingTalk app 'main' unavailable" in reason, reason
        assert answer in reason, "the reason carries DingTalk's answer"
        await asyncio.sleep(1.0)  # several probes, all refused
        assert not cycle.done()
        assert petty.cp.watermark_ms == watermark, "no window counts as read"
        await sandbox.call("POST", "/_sandbox/faults", json={knob: 0.0})
        assert await asyncio.wait_for(cycle, timeout=30) is True
    finally:
        stop.set()
        await producer.stop()
        await client.aclose()

    assert up() == 1 and health.ready() == (True, "ok")
    assert registry.get_sample_value("dingdee_ready", {"stage": "extractor"}) == 1
    assert set(await terminal_emitted(kafka)) == set(ids)
    assert petty.cp.watermark_ms > watermark
    assert await read_topic(kafka, Topics(kafka.topic_prefix).dlq("extractor")) == []
    assert (
        registry.get_sample_value(
            "dingdee_dlq_records_total",
            {"stage": "extractor", "flow": "petty-cash", "error_class": "exhausted"},
        )
        is None
    )


async def test_an_event_while_dingtalk_is_busy_is_answered_later_and_counts_no_failure(
    kafka: KafkaSettings, sandbox: Sandbox
) -> None:
    """A ``get`` failing with every other call failing too is DingTalk's fault, not the id's."""
    clock = Clock(START_MS)
    (approval,) = await sandbox.approved(1)
    app, producer, client = await make_app(
        kafka,
        sandbox,
        clock,
        CollectorRegistry(),
        retry=FAST_RETRY,
        detail_failures_before_dlq=1,
    )
    petty = next(p for p in app.pollers if p.source.flow == "petty-cash")
    try:
        await sandbox.call("POST", "/_sandbox/faults", json={"busy_rate": 1.0})
        with pytest.raises(DingTalkUnavailableError):
            await petty.on_event(approval)
        await sandbox.call("POST", "/_sandbox/faults", json={"busy_rate": 0.0})
        assert await petty.on_event(approval) is True
    finally:
        await producer.stop()
        await client.aclose()
    assert set(await terminal_emitted(kafka)) == {approval}
    letters = await read_topic(kafka, Topics(kafka.topic_prefix).dlq("extractor"))
    assert letters == [], "with one failure before a dead letter, a blamed id would show"


async def test_an_id_dingtalk_does_not_know_is_dead_lettered_as_permanent(
    kafka: KafkaSettings, sandbox: Sandbox
) -> None:
    """DingTalk rejects the ``get`` for its data (88/820005): the dead letter and its metric
    say ``permanent``, not ``exhausted``."""
    registry = CollectorRegistry()
    app, producer, client = await make_app(
        kafka, sandbox, Clock(START_MS), registry, retry=FAST_RETRY, detail_failures_before_dlq=1
    )
    petty = next(p for p in app.pollers if p.source.flow == "petty-cash")
    try:
        assert await petty.on_event("no-such-instance") is True
    finally:
        await producer.stop()
        await client.aclose()
    (letter,) = await read_topic(kafka, Topics(kafka.topic_prefix).dlq("extractor"))
    assert dict(letter.headers)["dlq-error-class"] == b"permanent"
    labels = {"stage": "extractor", "flow": "petty-cash"}
    dead = registry.get_sample_value
    assert dead("dingdee_dlq_records_total", {**labels, "error_class": "permanent"}) == 1
    assert dead("dingdee_dlq_records_total", {**labels, "error_class": "exhausted"}) is None
    assert dead("dingdee_records_out_total", {**labels, "outcome": "dead_lettered"}) == 1


async def test_a_monthly_budget_stretches_polling_and_the_month_is_reported(
    kafka: KafkaSettings, sandbox: Sandbox
) -> None:
    clock = Clock(START_MS)
    registry = CollectorRegistry()
    app, producer, client = await make_app(kafka, sandbox, clock, registry, budget=2000)
    try:
        for step in range(1, 13):  # an approval an hour, polled every hour
            clock.now_ms = START_MS + step * 3600_000
            await sandbox.set_clock(clock.now_ms)
            body = await sandbox.call(
                "POST", "/_sandbox/instances", json={"process_code": PROCESS_CODES["petty-cash"]}
            )
            await sandbox.call("POST", f"/_sandbox/instances/{body['id']}/approve")
            for poller in app.pollers:
                await poller.cycle()
        pacer = app.pacers[DEMO_APP.name]
        paced = [pacer.interval(p, 30.0) for p in app.pollers]
        metered = (await sandbox.call("GET", "/_sandbox/stats"))["metered_calls"]
        restarted, producer2, client2 = await make_app(kafka, sandbox, clock, CollectorRegistry())
        await producer2.stop()
        await client2.aclose()
        at = datetime.fromtimestamp(clock.now_ms / 1000, UTC).isoformat()
        code, out = await dingdee(kafka, "quota", "status", "--budget", "main=5000", "--at", at)
        assert code == 0, out
        row = next(line for line in out.splitlines() if line.strip("│ ").startswith("main"))
        assert row.split("│")[5].strip() == f"{metered}", row
        assert "yes" in row
        # hourly cycles do not fit 2 000 calls; the pace that does is the one the extractor chose
        code, out = await dingdee(kafka, "quota", "status", "--budget", "main=2000", "--at", at)
        assert code == 1, "a month heading past its budget exits 1"
        row = next(line for line in out.splitlines() if line.strip("│ ").startswith("main"))
        fitting = row.split("│")[11].strip()
        assert fitting == f"{paced[0] / 3600:.1f} h" or fitting == f"{paced[0] / 60:.1f} min", row
        # re-checks of open instances slow down with polling, at most to a day
        petty = next(p for p in app.pollers if p.source.flow == "petty-cash")
        body = await sandbox.call(
            "POST", "/_sandbox/instances", json={"process_code": PROCESS_CODES["petty-cash"]}
        )
        clock.now_ms += 3600_000
        await sandbox.set_clock(clock.now_ms)
        await petty.cycle()
        due_in = petty.cp.open_instances[body["id"]].next_check_ms - clock.now_ms
        assert 1800_000 * 2 < due_in <= 24 * 3600_000, due_in
    finally:
        await producer.stop()
        await client.aclose()

    used = registry.get_sample_value("dingdee_dingtalk_quota_used_calls", {"app": DEMO_APP.name})
    assert used == metered, "the extractor counts what DingTalk meters"
    assert petty.pace == paced[0] / 30.0
    # 3 flows polling every 30 s would list ~259 000 times in the rest of November
    assert all(30.0 < s <= 24 * 3600 for s in paced)
    projected = registry.get_sample_value(
        "dingdee_dingtalk_quota_projected_calls", {"app": DEMO_APP.name}
    )
    assert projected is not None and used is not None and used < projected <= 2000 * 0.9 + 1
    remaining = registry.get_sample_value(
        "dingdee_dingtalk_quota_remaining_calls", {"app": DEMO_APP.name}
    )
    assert remaining is not None and used is not None and remaining == 2000 - used
    resumed = sum(p.cp.usage.calls for p in restarted.pollers if p.cp.usage is not None)
    assert resumed == used, "the month's count survives a restart (it lives in the checkpoints)"
