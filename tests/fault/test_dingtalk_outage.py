"""DingTalk down for 60 s in the middle of a poll cycle: the extractor waits and resumes.

Two outages, each its own test with its own sandbox, topics and ports: the sandbox process frozen
(SIGSTOP: connections hang, calls time out) and the sandbox answering every metered call with
``{"errcode": -1, "errmsg": "系统繁忙"}`` (contract §5.3; the ``busy_rate`` knob of §7.6). Either
way ``approvals.raw`` ends with exactly one snapshot of every instance, nothing is dead-lettered,
and the extractor never exits; during the outage ``/readyz`` says why and
``dingdee_dingtalk_up`` is 0.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections import Counter
from pathlib import Path

import httpx
import pytest

from dingdee_common.codec import decode_model
from dingdee_common.contracts import ApprovalSnapshot
from dingdee_common.kafka.topics import Topics
from dingdee_common.settings import KafkaSettings
from dingdee_dev.broker import free_port
from dingdee_dev.procs import ManagedProcess
from dingdee_dev.stack import start_sandbox
from dingdee_sandbox.demo_org import DEMO_APP, PROCESS_CODES
from tests.helpers import demo_flows_file, poll_until, read_topic

pytestmark = [pytest.mark.fault, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
OUTAGE_SECONDS = 60.0
DOWN_METRIC = f'dingdee_dingtalk_up{{app="{DEMO_APP.name}"}} 0.0'
UP_METRIC = f'dingdee_dingtalk_up{{app="{DEMO_APP.name}"}} 1.0'


def extractor_env(kafka: KafkaSettings, url: str, port: int) -> dict[str, str]:
    """Short timeouts and backoffs, so the outage is noticed and its end found quickly."""
    return {
        "DINGDEE_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "DINGDEE_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
        "DINGDEE_FLOWS_FILE": str(demo_flows_file()),
        "DINGDEE_DINGTALK__BASE_URL": url,
        "DINGDEE_DINGTALK__APPS": json.dumps(
            {DEMO_APP.name: {"app_key": DEMO_APP.app_key, "app_secret": DEMO_APP.app_secret}}
        ),
        "DINGDEE_DINGTALK__TIMEOUT_SECONDS": "1",
        "DINGDEE_RETRY__MAX_ATTEMPTS": "3",
        "DINGDEE_RETRY__INITIAL_BACKOFF_SECONDS": "0.05",
        "DINGDEE_RETRY__MAX_BACKOFF_SECONDS": "0.5",
        "DINGDEE_OUTAGE__INITIAL_BACKOFF_SECONDS": "0.5",
        "DINGDEE_OUTAGE__MAX_BACKOFF_SECONDS": "4",
        "DINGDEE_POLL__INTERVAL_SECONDS": "2",
        "DINGDEE_POLL__OPEN_RECHECK_INITIAL_SECONDS": "5",
        "DINGDEE_POLL__DETAIL_FAILURES_BEFORE_DLQ": "1",  # any blamed instance would show
        "DINGDEE_HTTP__HOST": "127.0.0.1",
        "DINGDEE_HTTP__PORT": str(port),
        "DINGDEE_TELEMETRY__LOG_FORMAT": "json",
    }


@pytest.mark.parametrize("outage", ["frozen", "busy"])
async def test_dingtalk_outage_mid_cycle_is_waited_out(
    kafka: KafkaSettings, tmp_path: Path, outage: str
) -> None:
    sandbox, url = await start_sandbox("dingtalk", tmp_path, "--demo", "300", "--seed", "21")
    port = free_port()
    ops = f"http://127.0.0.1:{port}"
    extractor = ManagedProcess.python_module(
        "extractor",
        "dingdee_extractor",
        env=extractor_env(kafka, url, port),
        log_path=tmp_path / "extractor.log",
    )
    assert sandbox.pid is not None
    try:
        async with httpx.AsyncClient(timeout=5.0) as http:

            async def gets() -> int:  # answered ``get`` calls
                stats = (await http.get(f"{url}/_sandbox/stats")).json()["requests"]
                return int(stats.get("get:0", 0))

            instances = [
                i
                for code in PROCESS_CODES.values()
                for i in (
                    await http.get(f"{url}/_sandbox/instances", params={"process_code": code})
                ).json()["instances"]
            ]
            extractor.start()

            async def cycle_under_way() -> bool:
                return await gets() >= 40

            await poll_until(cycle_under_way, timeout=60, what="the first poll cycle's gets")
            at_outage = await gets()
            if outage == "frozen":
                os.killpg(sandbox.pid, signal.SIGSTOP)
            else:
                await http.post(f"{url}/_sandbox/faults", json={"busy_rate": 1.0})
            started = asyncio.get_running_loop().time()
            try:

                async def waiting() -> bool:
                    ready = await http.get(f"{ops}/readyz")
                    metrics = (await http.get(f"{ops}/metrics")).text
                    return ready.status_code == 503 and DOWN_METRIC in metrics

                await poll_until(waiting, timeout=40, what="/readyz and the gauge saying down")
                reason = (await http.get(f"{ops}/readyz")).json()["reason"]
                assert "DingTalk app 'main' unavailable" in reason, reason
                left = OUTAGE_SECONDS - (asyncio.get_running_loop().time() - started)
                await asyncio.sleep(max(0.0, left))
                assert extractor.alive, f"the extractor exited:\n{extractor.tail()}"
            finally:
                if outage == "frozen":
                    os.killpg(sandbox.pid, signal.SIGCONT)
            if outage == "busy":
                await http.post(f"{url}/_sandbox/faults", json={"busy_rate": 0.0})

            async def all_emitted() -> bool:
                snapshots = await read_topic(kafka, Topics(kafka.topic_prefix).approvals_raw)
                return len(snapshots) >= len(instances)

            await poll_until(all_emitted, timeout=120, what="a snapshot of every instance")

            async def recovered() -> bool:
                ready = await http.get(f"{ops}/readyz")
                return (
                    ready.status_code == 200
                    and UP_METRIC in (await http.get(f"{ops}/metrics")).text
                )

            await poll_until(recovered, timeout=30, what="/readyz ready and the gauge up again")
            await asyncio.sleep(5.0)  # another cycle or two: a late duplicate would show
            alive, starts = extractor.alive, extractor.starts
    finally:
        extractor.stop()
        sandbox.stop()

    topics = Topics(kafka.topic_prefix)
    snapshots = [
        decode_model(r.value, ApprovalSnapshot, supported_versions=frozenset({1}))
        for r in await read_topic(kafka, topics.approvals_raw)
    ]
    emitted = Counter(s.process_instance_id for s in snapshots)
    assert set(emitted) == {i["id"] for i in instances}, "every instance, and nothing else"
    assert [k for k, n in emitted.items() if n > 1] == [], "an instance was emitted twice"
    final = {s.process_instance_id: s.status for s in snapshots}
    assert final == {i["id"]: i["status"] for i in instances}
    assert await read_topic(kafka, topics.dlq("extractor")) == [], "an outage is no dead letter"
    assert at_outage < len(instances), "the outage must land mid-cycle"
    assert alive and starts == 1, "the extractor rode the outage out without exiting"
