"""Three flows, over 5 000 instances, late finishers, revocations and modifications after approval,
2 % transient faults: the emitted (instance, terminal status) set equals the sandbox's exactly."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from dingdee_common.kafka.clients import make_producer
from dingdee_common.observability.server import Health
from dingdee_common.settings import KafkaSettings
from dingdee_extractor.app import ExtractorApp
from dingdee_extractor.dingtalk.client import DingTalkClient
from dingdee_extractor.flows import load_sources
from dingdee_extractor.metrics import ExtractorMetrics
from dingdee_extractor.settings import DingTalkSettings, ExtractorSettings, PollSettings
from dingdee_sandbox.demo_org import DEMO_APP
from tests.integration.test_extractor_sandbox import (  # noqa: F401 - the sandbox fixture
    HOUR_MS,
    START_MS,
    Clock,
    Sandbox,
    sandbox,
    terminal_emitted,
)

pytestmark = [pytest.mark.fault, pytest.mark.slow]

CODES = {
    "petty-cash": "PROC-BYJ-7F3A2C91",
    "travel": "PROC-CL-3C9D11A7",
    "misc": "PROC-QT-88E2B5F0",
}
PER_FLOW = 1_700
FLOWS = "flows:\n" + "".join(
    f"  - id: {flow}\n    dingtalk: {{app: main, process_code: {code}, start_date: '2026-10-01'}}\n"
    for flow, code in CODES.items()
)


async def test_three_flows_five_thousand_instances_exact(
    kafka: KafkaSettings,
    sandbox: Sandbox,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    rng = random.Random(5)
    await sandbox.call("POST", "/_sandbox/faults", json={"qps": 5000})
    ids: list[str] = []
    for code in CODES.values():
        body = await sandbox.call(
            "POST",
            "/_sandbox/instances",
            json={"process_code": code, "count": PER_FLOW, "spread_ms": 3 * 24 * HOUR_MS},
        )
        ids += body["ids"]
    late = set(rng.sample(ids, len(ids) // 10))
    actions: dict[str, list[str]] = {"approve": [], "refuse": [], "terminate": []}
    for pid in ids:
        if pid not in late:
            actions[rng.choice(["approve"] * 8 + ["refuse", "terminate"])].append(pid)
    for action, chosen in actions.items():
        await sandbox.call(
            "POST", "/_sandbox/instances/bulk", json={"ids": chosen, "action": action}
        )
    await sandbox.call(
        "POST", "/_sandbox/faults", json={"qps": 5000, "busy_rate": 0.01, "http_500_rate": 0.01}
    )

    flows_file = tmp_path / "flows.yaml"
    flows_file.write_text(FLOWS, encoding="utf-8")
    settings = ExtractorSettings(
        flows_file=flows_file,
        kafka=kafka,
        dingtalk=DingTalkSettings(
            base_url=sandbox.url,
            apps={"main": {"app_key": DEMO_APP.app_key, "app_secret": DEMO_APP.app_secret}},
            qps=2000,
            get_concurrency=16,
        ),
        poll=PollSettings(settle_seconds=0, open_recheck_initial_seconds=3600),
    )
    clock = Clock(START_MS)
    metrics = ExtractorMetrics.create(CollectorRegistry())
    producer = make_producer(kafka)
    await producer.start()
    client = DingTalkClient(settings.dingtalk, metrics)
    sources = load_sources(flows_file, frozenset({"main"}))
    app = ExtractorApp(settings, sources, producer, client, metrics, Health(), clock=clock)
    await app.setup()
    linked: list[str] = []
    try:
        for step in range(16):  # four simulated days in 6-hour cycles
            clock.now_ms = START_MS + step * 6 * HOUR_MS
            await sandbox.set_clock(clock.now_ms)
            if step == 5:
                await sandbox.call(
                    "POST",
                    "/_sandbox/instances/bulk",
                    json={"ids": sorted(late), "action": "approve"},
                )
                approved = actions["approve"]
                for action, chosen in (("revoke", approved[:25]), ("modify", approved[25:50])):
                    body = await sandbox.call(
                        "POST", "/_sandbox/instances/bulk", json={"ids": chosen, "action": action}
                    )
                    linked += body["ids"]
            if step == 9:
                await sandbox.call(
                    "POST", "/_sandbox/instances/bulk", json={"ids": linked, "action": "approve"}
                )
            for poller in app.pollers:
                await poller.cycle()
    finally:
        await producer.stop()
        await client.aclose()

    truth = {
        i["id"]: f"{i['status']}/{i['result'] or ''}/{i['biz_action']}"
        for code in CODES.values()
        for i in (await sandbox.call("GET", "/_sandbox/instances", params={"process_code": code}))[
            "instances"
        ]
        if i["status"] in ("COMPLETED", "TERMINATED")
    }
    assert len(truth) >= 5_000 + len(linked)
    emitted = await terminal_emitted(kafka)
    assert {k: v for k, v in emitted.items() if k in truth} == truth
    assert set(emitted) == set(truth), "every instance ends terminal here, so nothing else"
    requests = (await sandbox.call("GET", "/_sandbox/requests"))["requests"]
    assert any(r["errcode"] == -1 for r in requests), "transient faults must have fired"
