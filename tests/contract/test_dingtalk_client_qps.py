"""The extractor's DingTalk client never crosses the sandbox's per-(app, API) QPS limit.

Contract ``dingtalk.md`` §5.1: 20 QPS per app and API (standard edition), ``90018`` beyond it;
the sandbox enforces it in a sliding second on the arrival times (its default ``qps`` 20). The
client, at its default settings (one bucket per API path at 20 less a 5 % margin), is driven
far faster than that on two APIs at once, over real HTTP.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from dingdee_common.web import start_site
from dingdee_extractor.dingtalk.client import DingTalkClient
from dingdee_extractor.metrics import ExtractorMetrics
from dingdee_extractor.settings import DingTalkSettings
from dingdee_sandbox.demo_org import DEMO_APP, PROCESS_CODES
from dingdee_sandbox.dingtalk.app import create_app
from dingdee_sandbox.dingtalk.state import DAY_MS, State

pytestmark = pytest.mark.contract
APPS = {DEMO_APP.name: {"app_key": DEMO_APP.app_key, "app_secret": DEMO_APP.app_secret}}
LIMIT = 20  # the sandbox's default per-(app, API) QPS, the contract's standard edition


@pytest.fixture
async def sandbox() -> AsyncIterator[tuple[State, DingTalkClient]]:
    state = State(seed=4)
    state.seed_demo(20)
    assert state.faults.qps == LIMIT
    runner, port = await start_site(create_app(state))
    settings = DingTalkSettings(base_url=f"http://127.0.0.1:{port}", apps=APPS)
    client = DingTalkClient(settings, ExtractorMetrics.create(CollectorRegistry()))
    yield state, client
    await client.aclose()
    await runner.cleanup()


def most_in_a_second(times: list[float]) -> int:
    """The most arrivals in any sliding second (the sandbox's window)."""
    times = sorted(times)
    return max((sum(1 for t in times[i:] if t - s < 1.0) for i, s in enumerate(times)), default=0)


async def test_two_apis_at_full_speed_never_cross_the_per_api_limit(
    sandbox: tuple[State, DingTalkClient],
) -> None:
    state, client = sandbox
    ids = list(state.instances)
    code = PROCESS_CODES["petty-cash"]
    now = state.now_ms()
    gets, lists = 76, 38  # 4 s of gets and 2 s of listids at 19 a second
    started = time.monotonic()
    await asyncio.gather(
        *(client.get(DEMO_APP.name, ids[n % len(ids)]) for n in range(gets)),
        *(client.listids(DEMO_APP.name, code, now - DAY_MS, now, 0) for _ in range(lists)),
    )
    elapsed = time.monotonic() - started
    answered = [r for r in state.requests if r["api"] in ("get", "listids")]
    assert [r for r in answered if r["errcode"] != 0] == []  # no 90018, nothing else either
    for api in ("get", "listids"):
        assert most_in_a_second([r["at"] for r in answered if r["api"] == api]) <= LIMIT
    # each API has its own bucket: the listids ran beside the gets, not after them
    assert elapsed < (gets + lists) / client.limits.rate * 0.75
    assert elapsed >= (gets - 1) / client.limits.rate * 0.98
