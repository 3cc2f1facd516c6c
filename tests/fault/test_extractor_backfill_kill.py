"""SIGKILL the extractor in the middle of a backfill, restart it: exact set, at most one window
read twice (checkpoint per chunk, written after the chunk's snapshots were acked)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from dingdee_common.codec import decode_model
from dingdee_common.contracts import ApprovalSnapshot
from dingdee_common.kafka.topics import Topics
from dingdee_common.settings import KafkaSettings
from dingdee_dev.procs import ManagedProcess
from dingdee_dev.stack import start_sandbox
from dingdee_sandbox.demo_org import DEMO_APP, PROCESS_CODES
from tests.helpers import demo_flows_file, poll_until, read_topic

pytestmark = [pytest.mark.fault, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


async def test_sigkill_during_backfill_then_resume(kafka: KafkaSettings, tmp_path: Path) -> None:
    sandbox, url = await start_sandbox(
        "dingtalk", tmp_path, "--demo", "600", "--seed", "9", "--qps", "40"
    )
    start = (datetime.now(UTC) - timedelta(days=31)).date().isoformat()
    env = {
        "DINGDEE_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "DINGDEE_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
        "DINGDEE_FLOWS_FILE": str(demo_flows_file()),
        "DINGDEE_DINGTALK__BASE_URL": url,
        "DINGDEE_DINGTALK__APPS": json.dumps(
            {"main": {"app_key": DEMO_APP.app_key, "app_secret": DEMO_APP.app_secret}}
        ),
        "DINGDEE_DINGTALK__QPS": "36",
        "DINGDEE_HTTP__PORT": "0",
    }
    argv = [
        sys.executable,
        "-m",
        "dingdee_ops",  # dingdee backfill: the extractor's code, the operator's command line
        "backfill",
        "--flow",
        "petty-cash",
        "--from",
        start,
        "--chunk-days",
        "2",
        "--no-follow",
    ]
    extractor = ManagedProcess("backfill", argv, env=env, log_path=tmp_path / "backfill.log")
    try:
        extractor.start()
        await asyncio.sleep(6.0)
        assert extractor.alive, f"backfill finished before the kill:\n{extractor.tail()}"
        extractor.kill()
        extractor.start()
        await poll_until(lambda: not extractor.alive, timeout=120, what="the resumed backfill")
        assert extractor.proc is not None and extractor.proc.returncode == 0, extractor.tail()
        async with httpx.AsyncClient(base_url=url) as client:
            instances = (
                await client.get(
                    "/_sandbox/instances", params={"process_code": PROCESS_CODES["petty-cash"]}
                )
            ).json()["instances"]
            requests = (await client.get("/_sandbox/requests")).json()["requests"]
    finally:
        extractor.stop()
        sandbox.stop()

    snapshots = [
        decode_model(r.value, ApprovalSnapshot, supported_versions=frozenset({1}))
        for r in await read_topic(kafka, Topics(kafka.topic_prefix).approvals_raw)
    ]
    assert {s.process_instance_id for s in snapshots} == {i["id"] for i in instances}
    firsts = Counter(
        (r["body"]["start_time"], r["body"]["end_time"])
        for r in requests
        if r["path"].endswith("/listids") and r["body"] and r["body"]["cursor"] == 0
    )
    reread = [w for w, n in firsts.items() if n > 1]
    assert len(reread) <= 1, f"windows read twice after the restart: {reread}"
