"""The extractor's DingTalk client against the DingTalk sandbox over real HTTP: one test per case
the contract names (auth, throttling, busy, quota, paging, limits)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry

from dingdee_common.errors import FatalError, PermanentError, TransientError
from dingdee_common.retry import retry_transient
from dingdee_common.settings import RetrySettings
from dingdee_common.web import start_site
from dingdee_extractor.dingtalk.client import DingTalkClient, QuotaExhaustedError
from dingdee_extractor.metrics import ExtractorMetrics
from dingdee_extractor.settings import DingTalkSettings
from dingdee_sandbox.demo_org import DEMO_APP, PROCESS_CODES
from dingdee_sandbox.dingtalk.app import create_app
from dingdee_sandbox.dingtalk.state import DAY_MS, Faults, State

pytestmark = pytest.mark.contract
PETTY = PROCESS_CODES["petty-cash"]
APPS = {DEMO_APP.name: {"app_key": DEMO_APP.app_key, "app_secret": DEMO_APP.app_secret}}


@dataclass
class Env:
    state: State
    client: DingTalkClient
    metrics: ExtractorMetrics
    url: str


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    state = State(seed=2)
    state.seed_demo(45)
    runner, port = await start_site(create_app(state))
    url = f"http://127.0.0.1:{port}"
    metrics = ExtractorMetrics.create(CollectorRegistry())
    client = DingTalkClient(
        DingTalkSettings(base_url=url, apps=APPS, qps=200, timeout_seconds=1.0),
        metrics,
    )
    yield Env(state, client, metrics, url)
    await client.aclose()
    await runner.cleanup()


def metric(env: Env, name: str, **labels: str) -> float:
    """A sample of the client's own registry (no scrape needed)."""
    for family in [*env.metrics.token_refreshes.collect(), *env.metrics.requests.collect()]:
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def all_ids(env: Env, start: int, end: int) -> list[str]:
    ids: list[str] = []
    cursor = 0
    while True:
        page = await env.client.listids("main", PETTY, start, end, cursor)
        ids += page.ids
        if page.next_cursor is None:
            return ids
        cursor = page.next_cursor


class TestPagingAndDetail:
    async def test_pages_to_the_end_in_pages_of_twenty(self, env: Env) -> None:
        now = env.state.now_ms()
        ids = await all_ids(env, now - 31 * DAY_MS, now)
        truth = env.state.listed(PETTY, now - 31 * DAY_MS, now)
        assert ids == truth and len(ids) == 45
        bodies = [r["body"] for r in env.state.requests if r["path"].endswith("/listids")]
        assert [b["size"] for b in bodies] == [20, 20, 20]
        assert [b["cursor"] for b in bodies] == [0, 20, 40]

    async def test_get_returns_the_instance_without_its_id(self, env: Env) -> None:
        pid = next(iter(env.state.instances))
        instance = await env.client.get("main", pid)
        assert "process_instance_id" not in instance
        assert instance["business_id"] == env.state.instances[pid].business_id

    async def test_unknown_instance_is_permanent(self, env: Env) -> None:
        with pytest.raises(PermanentError, match="820005"):
            await env.client.get("main", "no-such-instance")


class TestTokens:
    async def test_one_token_is_reused_for_every_call(self, env: Env) -> None:
        for pid in list(env.state.instances)[:5]:
            await env.client.get("main", pid)
        tokens = [r for r in env.state.requests if r["path"] == "/gettoken"]
        assert len(tokens) == 1

    async def test_revoked_token_is_refreshed_once_and_the_call_succeeds(self, env: Env) -> None:
        pid = next(iter(env.state.instances))
        await env.client.get("main", pid)
        env.state.revoked.update(t for t, _ in env.state.tokens.values())
        await env.client.get("main", pid)
        assert metric(env, "dingdee_dingtalk_token_refreshes_total", reason="rejected") == 1
        assert [r["errcode"] for r in env.state.requests][-3:] == ["40014", 0, 0]

    async def test_expired_token_on_the_sandbox_clock_is_refreshed(self, env: Env) -> None:
        pid = next(iter(env.state.instances))
        await env.client.get("main", pid)
        env.state.manual_now_ms = env.state.now_ms() + 7_300_000  # past the 7200 s TTL
        await env.client.get("main", pid)
        assert sum(1 for r in env.state.requests if r["path"] == "/gettoken") == 2

    async def test_concurrent_callers_share_one_refresh(self, env: Env) -> None:
        pids = list(env.state.instances)[:10]
        await asyncio.gather(*(env.client.get("main", p) for p in pids))
        assert sum(1 for r in env.state.requests if r["path"] == "/gettoken") == 1

    async def test_wrong_secret_is_fatal_and_names_the_setting(self, env: Env) -> None:
        bad = DingTalkClient(
            DingTalkSettings(
                base_url=env.url,
                apps={"main": {"app_key": DEMO_APP.app_key, "app_secret": "wrong"}},
            ),
            env.metrics,
        )
        with pytest.raises(FatalError, match="DINGDEE_DINGTALK__APPS"):
            await bad.get("main", "x")
        await bad.aclose()


class TestThrottlingAndFaults:
    async def test_90018_is_transient_and_waits_for_the_next_second(self, env: Env) -> None:
        env.state.faults = Faults(qps=2)
        pids = list(env.state.instances)[:6]
        policy = RetrySettings(initial_backoff_seconds=0.05, max_attempts=10, deadline_seconds=20)
        got = await asyncio.gather(
            *(retry_transient(functools.partial(env.client.get, "main", p), policy) for p in pids)
        )
        assert len(got) == 6
        assert any(r["errcode"] == "90018" for r in env.state.requests)

    async def test_client_bucket_keeps_under_the_limit(self, env: Env) -> None:
        env.state.faults = Faults(qps=20)
        slow = DingTalkClient(DingTalkSettings(base_url=env.url, apps=APPS, qps=18), env.metrics)
        pids = list(env.state.instances)[:40]
        await asyncio.gather(*(slow.get("main", p) for p in pids))
        await slow.aclose()
        assert not [r for r in env.state.requests if r["errcode"] == "90018"]

    async def test_90002_backs_the_app_off(self, env: Env) -> None:
        env.state.faults = Faults(global_qps_rate=1.0)
        with pytest.raises(TransientError) as info:
            await env.client.get("main", next(iter(env.state.instances)))
        assert info.value.error_type == "90002" and (info.value.retry_after or 0) >= 1.0

    @pytest.mark.parametrize(
        ("faults", "code"),
        [
            (Faults(busy_rate=1.0), "system_busy"),
            (Faults(http_500_rate=1.0), "http_500"),
            (Faults(malformed_rate=1.0), "malformed"),
            (Faults(slow_rate=1.0, slow_seconds=3.0), "timeout"),
        ],
    )
    async def test_transient_faults(self, env: Env, faults: Faults, code: str) -> None:
        env.state.faults = faults
        with pytest.raises(TransientError) as info:
            await env.client.get("main", next(iter(env.state.instances)))
        assert info.value.error_type == code

    async def test_monthly_quota_exhausted_is_90020(self, env: Env) -> None:
        env.state.faults = Faults(monthly_quota=2)
        pid = next(iter(env.state.instances))
        await env.client.get("main", pid)
        await env.client.get("main", pid)
        with pytest.raises(QuotaExhaustedError):
            await env.client.get("main", pid)


class TestListLimits:
    async def test_window_over_120_days_is_rejected_by_dingtalk(self, env: Env) -> None:
        now = env.state.now_ms()
        with pytest.raises(PermanentError, match="400002"):
            await env.client.listids("main", PETTY, now - 121 * DAY_MS, now, 0)

    async def test_start_older_than_365_days_is_rejected(self, env: Env) -> None:
        now = env.state.now_ms()
        with pytest.raises(PermanentError, match="400002"):
            await env.client.listids("main", PETTY, now - 366 * DAY_MS, now - 300 * DAY_MS, 0)

    def test_page_size_over_20_is_refused_by_the_settings(self) -> None:
        with pytest.raises(ValueError, match="page_size"):
            DingTalkSettings(apps=APPS, page_size=21)
