"""The DingTalk sandbox's ``/_sandbox/`` control API and its command line, over real HTTP."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from dingdee_sandbox.demo_org import PROCESS_CODES
from dingdee_sandbox.dingtalk.state import DAY_MS, State
from tests.helpers import poll_until
from tests.unit.sandbox_dingtalk.harness import Sandbox, running

pytestmark = pytest.mark.contract
PETTY, DEPT = PROCESS_CODES["petty-cash"], PROCESS_CODES["department-sync"]
T0 = 1_790_000_000_000


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    state = State(seed=8, manual_now_ms=T0)
    state.seed_demo(30)
    async with running(state) as sandbox:
        yield sandbox


class TestInstances:
    async def test_expected_is_approved_with_biz_action_none_sorted(self, sb: Sandbox) -> None:
        rows = (await sb.control("GET", "expected"))["expected"]
        truth = [
            i
            for i in sb.state.instances.values()
            if i.status == "COMPLETED" and i.result == "agree"
        ]
        assert {r["process_instance_id"] for r in rows} == {i.id for i in truth}
        assert rows == sorted(rows, key=lambda r: (r["process_code"], r["process_instance_id"]))
        assert set(rows[0]) == {"process_code", "process_instance_id", "business_id"}

    async def test_listing_filters_and_one_instance(self, sb: Sandbox) -> None:
        dept = (await sb.control("GET", "instances", params={"process_code": DEPT}))["instances"]
        assert len(dept) == 2 and all(r["process_code"] == DEPT for r in dept)
        done = await sb.control("GET", "instances", params={"status": "COMPLETED"})
        assert all(r["status"] == "COMPLETED" for r in done["instances"])
        one = await sb.control("GET", f"instances/{dept[0]['id']}")
        assert one["instance"] == dept[0] and one["process_instance"]["business_id"]
        assert (await sb.call("GET", "/_sandbox/instances/nope"))[0] == 404

    async def test_lifecycle_and_linked_instances(self, sb: Sandbox) -> None:
        made = await sb.control("POST", "instances", json={"process_code": PETTY})
        pid = made["id"]
        row = (await sb.control("GET", f"instances/{pid}"))["instance"]
        assert (row["status"], row["result"], row["finish_time_ms"]) == ("RUNNING", "", None)
        assert row["create_time_ms"] == T0 and made["business_id"] == row["business_id"]
        await sb.control("POST", "clock", json={"advance_ms": 3_600_000})
        done = await sb.control("POST", f"instances/{pid}/approve")
        assert done["finish_time_ms"] == T0 + 3_600_000 and done["result"] == "agree"
        assert (await sb.call("POST", f"/_sandbox/instances/{pid}/approve"))[0] == 409
        modified = await sb.control("POST", f"instances/{pid}/modify")
        revoked = await sb.control("POST", f"instances/{pid}/revoke")
        assert modified["biz_action"] == "MODIFY" and revoked["biz_action"] == "REVOKE"
        assert modified["main_process_instance_id"] == pid
        original = (await sb.control("GET", f"instances/{pid}"))["instance"]
        assert original["attached_process_instance_ids"] == [modified["id"], revoked["id"]]
        expected = {
            r["process_instance_id"] for r in (await sb.control("GET", "expected"))["expected"]
        }
        assert pid in expected and modified["id"] not in expected
        assert (await sb.call("POST", "/_sandbox/instances/nope/approve"))[0] == 404
        assert (await sb.call("POST", f"/_sandbox/instances/{pid}/explode"))[0] == 409

    async def test_bulk_create_and_act(self, sb: Sandbox) -> None:
        made = await sb.control(
            "POST", "instances", json={"process_code": DEPT, "count": 5, "spread_ms": DAY_MS}
        )
        times = [sb.state.instances[i].create_ms for i in made["ids"]]
        assert times == sorted(times) and times[0] == T0 - DAY_MS and times[-1] < T0
        acted = await sb.control(
            "POST", "instances/bulk", json={"ids": made["ids"], "action": "refuse"}
        )
        assert acted["ids"] == made["ids"]
        assert all(sb.state.instances[i].result == "refuse" for i in made["ids"])
        assert (await sb.call("POST", "/_sandbox/instances", json={}))[0] == 400
        bad = {"process_code": PETTY, "originator_userid": "nobody"}
        assert (await sb.call("POST", "/_sandbox/instances", json=bad))[0] == 400

    async def test_listeners_see_start_finish_terminate(self, sb: Sandbox) -> None:
        seen: list[tuple[str, str, str]] = []
        sb.state.listeners.append(lambda *event: seen.append(event))
        a = (await sb.control("POST", "instances", json={"process_code": PETTY}))["id"]
        b = (await sb.control("POST", "instances", json={"process_code": DEPT}))["id"]
        await sb.control("POST", f"instances/{a}/approve")
        await sb.control("POST", f"instances/{b}/terminate")
        linked = (await sb.control("POST", f"instances/{a}/revoke"))["id"]
        assert seen == [
            (a, PETTY, "start"),
            (b, DEPT, "start"),
            (a, PETTY, "finish"),
            (b, DEPT, "terminate"),
            (linked, PETTY, "start"),
        ]


class TestClockLogFaults:
    async def test_clock_modes(self, sb: Sandbox) -> None:
        assert await sb.control("GET", "clock") == {"mode": "manual", "now_ms": T0}
        assert (await sb.control("POST", "clock", json={"advance_ms": 5}))["now_ms"] == T0 + 5
        assert (await sb.control("POST", "clock", json={"now_ms": 42}))["now_ms"] == 42
        real = await sb.control("POST", "clock", json={"mode": "real"})
        assert real["mode"] == "real" and abs(real["now_ms"] - T0) > 0
        frozen = await sb.control("POST", "clock", json={"mode": "manual"})
        await asyncio.sleep(0.05)
        assert await sb.control("GET", "clock") == frozen

    async def test_request_log(self, sb: Sandbox) -> None:
        token = await sb.token()
        await sb.old("get", {"process_instance_id": "nope"}, token)
        log = (await sb.control("GET", "requests"))["requests"]
        assert [(r["method"], r["path"], r["api"], r["errcode"]) for r in log] == [
            ("GET", "/gettoken", "gettoken", 0),
            ("POST", "/topapi/processinstance/get", "get", "820005"),
        ]
        assert log[0]["query"]["appsecret"] == "***" and log[1]["query"]["access_token"] == token
        assert log[1]["app"] == log[0]["app"] and log[1]["at_ms"] == T0 and log[1]["status"] == 200
        assert log[1]["body"] == {"process_instance_id": "nope"}
        assert (await sb.control("DELETE", "requests"))["requests"] == []

    async def test_faults_read_patch_and_refuse_unknown(self, sb: Sandbox) -> None:
        knobs = await sb.control("POST", "faults", json={"busy_rate": 0.25})
        assert knobs["busy_rate"] == 0.25 and knobs["qps"] == 20
        status, body = await sb.call("POST", "/_sandbox/faults", json={"bussy": 1})
        assert status == 400 and "unknown knobs" in body["error"]
        status, body = await sb.call("POST", "/_sandbox/faults", json={"busy_rate": 2})
        assert status == 400 and "busy_rate" in body["error"]
        assert (await sb.control("GET", "faults"))["busy_rate"] == 0.25
        assert (await sb.control("GET", "healthz")) == {"status": "ok"}


async def _instances(url: str) -> list[dict[str, object]]:
    async with aiohttp.ClientSession() as http, http.get(url + "/_sandbox/instances") as resp:
        rows: list[dict[str, object]] = (await resp.json())["instances"]
        return rows


async def _start(tmp: Path, name: str) -> tuple[asyncio.subprocess.Process, str]:
    port_file = tmp / f"{name}.port"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dingdee_sandbox.dingtalk",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--port-file",
        str(port_file),
        "--demo",
        "60",
        "--seed",
        "9",
        "--now-ms",
        str(T0),
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), timeout=30)).decode().strip()
    await poll_until(port_file.exists, timeout=10, what="the port file")
    port = port_file.read_text().strip()
    assert line == f"listening on http://127.0.0.1:{port}"
    return proc, f"http://127.0.0.1:{port}"


async def test_command_line_serves_deterministic_demo_data(tmp_path: Path) -> None:
    procs = [await _start(tmp_path, name) for name in ("a", "b")]
    try:
        first, second = [await _instances(url) for _, url in procs]
    finally:
        for proc, _ in procs:
            proc.terminate()
            assert await asyncio.wait_for(proc.wait(), timeout=10) == 0
    assert first == second and len(first) == 64
    assert sum(1 for r in first if r["process_code"] == DEPT) == 4
