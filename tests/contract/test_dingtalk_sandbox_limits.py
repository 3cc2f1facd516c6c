"""The DingTalk sandbox's limits and faults over real HTTP: per-(app, API) QPS (90018), global
QPS (90002), the monthly quota (90020), permission (60011), -1, 5xx, malformed bodies, slow
answers, connection resets (contract §5, §7.6)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import datetime

import aiohttp
import pytest

from dingdee_sandbox.demo_org import DEMO_APP, PROCESS_CODES
from dingdee_sandbox.dingtalk.state import CST, DAY_MS, State
from tests.unit.sandbox_dingtalk.harness import Sandbox, running

pytestmark = pytest.mark.contract
PETTY = PROCESS_CODES["petty-cash"]
T0 = 1_790_000_000_000


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    state = State(seed=5, manual_now_ms=T0)
    state.seed_demo(30)
    async with running(state) as sandbox:
        yield sandbox


async def burst(sb: Sandbox, token: str, n: int, api: str = "get") -> list[object]:
    """``n`` concurrent calls of ``api``; the outcome of each (0, sub_code or errcode)."""
    pid = next(iter(sb.state.instances))
    payload = (
        {"process_instance_id": pid}
        if api == "get"
        else {"process_code": PETTY, "start_time": T0 - DAY_MS}
    )
    bodies = await asyncio.gather(*(sb.old(api, payload, token) for _ in range(n)))
    return [b.get("sub_code") or b["errcode"] for b in bodies]


class TestQps:
    async def test_over_the_limit_answers_90018_per_app_and_api(self, sb: Sandbox) -> None:
        token = await sb.token()
        outcomes = await burst(sb, token, 30)
        assert outcomes.count(0) == 20 and outcomes.count("90018") == 10
        assert await burst(sb, token, 5, "listids") == [0] * 5  # another API has its own window
        rejected = next(r for r in sb.state.requests if r["errcode"] == "90018")
        assert rejected["app"] == DEMO_APP.app_key and rejected["api"] == "get"
        await asyncio.sleep(1.05)
        assert await burst(sb, token, 3) == [0, 0, 0]

    async def test_accepted_calls_never_exceed_the_limit_in_any_second(self, sb: Sandbox) -> None:
        await sb.control("POST", "faults", json={"qps": 5})
        token = await sb.token()
        for _ in range(6):
            await burst(sb, token, 4)
            await asyncio.sleep(0.3)
        accepted = sorted(
            r["at"] for r in sb.state.requests if r["api"] == "get" and r["errcode"] != "90018"
        )
        assert max(sum(1 for t in accepted if s <= t < s + 1.0) for s in accepted) <= 5
        assert any(r["errcode"] == "90018" for r in sb.state.requests)

    async def test_message_shape(self, sb: Sandbox) -> None:
        await sb.control("POST", "faults", json={"qps": 1})
        token = await sb.token()
        pid = next(iter(sb.state.instances))
        await sb.old("get", {"process_instance_id": pid}, token)
        body = await sb.old("get", {"process_instance_id": pid}, token)
        assert body["errcode"] == 88 and body["sub_code"] == "90018"
        assert body["errmsg"].startswith("ding talk error[subcode=90018,") and body["request_id"]


class TestGlobalQps:
    async def test_global_limit_answers_90002_until_the_penalty_ends(self, sb: Sandbox) -> None:
        await sb.control("POST", "faults", json={"global_qps": 3, "global_penalty_seconds": 60})
        token = await sb.token()
        assert await burst(sb, token, 4) == [0, 0, 0, "90002"]
        pid = next(iter(sb.state.instances))
        body = await sb.old("get", {"process_instance_id": pid}, token)
        assert body["sub_code"] == "90002"
        assert "apiPath(dingtalk.oapi.processinstance.get)" in body["errmsg"]
        end = re.search(r"限制将在 (\S+ \S+) 结束", body["errmsg"])
        assert end is not None
        end_ms = datetime.strptime(end.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=CST)
        assert int(end_ms.timestamp() * 1000) == (T0 + 60_000) // 1000 * 1000
        await asyncio.sleep(1.05)
        await sb.control("POST", "clock", json={"advance_ms": 60_000})
        assert (await sb.old("get", {"process_instance_id": pid}, token))["errcode"] == 0

    async def test_random_90002(self, sb: Sandbox) -> None:
        await sb.control("POST", "faults", json={"global_qps_rate": 1.0})
        assert await burst(sb, await sb.token(), 3) == ["90002"] * 3


class TestQuota:
    async def test_monthly_quota_answers_90020_token_calls_exempt_resets_monthly(
        self, sb: Sandbox
    ) -> None:
        await sb.control("POST", "faults", json={"monthly_quota": 3})
        token = await sb.token()
        pid = next(iter(sb.state.instances))
        codes = [
            (await sb.old("get", {"process_instance_id": pid}, token))["errcode"] for _ in range(4)
        ]
        assert codes == [0, 0, 0, 90020]
        body = await sb.old("get", {"process_instance_id": pid}, token)
        assert (
            body["errmsg"].startswith("您的企业本月api调用量已超过限制")
            and "额度:3次" in body["errmsg"]
        )
        assert await sb.token() == token  # gettoken is exempt
        stats = await sb.control("GET", "stats")
        assert stats["metered_calls"] == 3
        await sb.control("POST", "clock", json={"advance_ms": 40 * DAY_MS})
        assert (await sb.old("get", {"process_instance_id": pid}))["errcode"] == 0


async def test_permission_missing_answers_60011(sb: Sandbox) -> None:
    await sb.control("POST", "faults", json={"forbidden_apps": [DEMO_APP.app_key]})
    body = await sb.old("get", {"process_instance_id": "x"})
    assert body["errcode"] == 88 and body["sub_code"] == "60011"


class TestInjectedFaults:
    async def test_busy(self, sb: Sandbox) -> None:
        await sb.control("POST", "faults", json={"busy_rate": 1.0})
        body = await sb.old("get", {"process_instance_id": "x"})
        assert (body["errcode"], body["errmsg"]) == (-1, "系统繁忙") and body["request_id"]

    async def test_http_5xx(self, sb: Sandbox) -> None:
        token = await sb.token()
        path, params = "/topapi/processinstance/get", {"access_token": token}
        await sb.control("POST", "faults", json={"http_500_rate": 1.0})
        status, _ = await sb.call("POST", path, params=params, json={})
        assert status == 500
        await sb.control("POST", "faults", json={"http_500_rate": 0.0, "gateway_rate": 1.0})
        statuses = {(await sb.call("POST", path, params=params, json={}))[0] for _ in range(12)}
        assert statuses <= {502, 503, 504} and len(statuses) > 1

    async def test_malformed_body(self, sb: Sandbox) -> None:
        await sb.control("POST", "faults", json={"malformed_rate": 1.0})
        status, body = await sb.call(
            "POST",
            "/topapi/processinstance/get",
            params={"access_token": await sb.token()},
            json={},
        )
        assert status == 200 and isinstance(body, str) and body.startswith('{"errcode":0')

    async def test_slow_answer_times_out_a_client(self, sb: Sandbox) -> None:
        await sb.control("POST", "faults", json={"slow_rate": 1.0, "slow_seconds": 0.6})
        token = await sb.token()
        with pytest.raises(asyncio.TimeoutError):
            await sb.call(
                "POST",
                "/topapi/processinstance/get",
                params={"access_token": token},
                json={},
                timeout=aiohttp.ClientTimeout(total=0.2),
            )
        body = await sb.old("get", {"process_instance_id": "x"}, token)  # patient client
        assert body["sub_code"] == "820005"

    async def test_connection_reset(self, sb: Sandbox) -> None:
        token = await sb.token()
        await sb.control("POST", "faults", json={"reset_rate": 1.0})
        with pytest.raises(aiohttp.ClientConnectionError):
            await sb.old("get", {"process_instance_id": "x"}, token)
        await sb.control("POST", "faults", json={"reset_rate": 0.0})
        assert sb.state.requests[-1]["status"] == 0 and sb.state.requests[-1]["errcode"] == "reset"

    async def test_faults_are_deterministic_for_a_seed(self, sb: Sandbox) -> None:
        async def run() -> list[object]:
            await sb.control("POST", "faults", json={"seed": 1})
            await sb.control("POST", "faults", json={"seed": 11, "busy_rate": 0.5, "qps": 1000})
            return [
                (await sb.old("get", {"process_instance_id": "x"}, token))["errcode"]
                for _ in range(16)
            ]

        token = await sb.token()
        first, second = await run(), await run()
        assert first == second and set(first) == {-1, 88}
