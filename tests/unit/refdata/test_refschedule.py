"""The reading schedule both reference-source owners share (``dingdee_common.refschedule``): the
loader's Kingdee refresher and the extractor's contact sync."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from dingdee_common.flows import load_flows
from dingdee_common.refschedule import RefreshSchedule
from dingdee_common.settings import KafkaSettings
from dingdee_extractor.contacts import RETRY_SECONDS, ContactSync
from dingdee_extractor.settings import ContactSourceSettings, DingTalkSettings, ExtractorSettings

ROOT = Path(__file__).resolve().parents[3]
REFS = load_flows(ROOT / "config" / "flows.yaml").references()
KINGDEE = REFS.owned_by("loader")
DINGTALK = REFS.owned_by("extractor")


def schedule(min_interval: float = 30.0) -> RefreshSchedule:
    return RefreshSchedule(
        KafkaSettings(), KINGDEE, group_id="g", min_interval_seconds=min_interval
    )


def test_every_source_is_due_at_start_then_after_its_interval() -> None:
    s = schedule()
    assert sorted(s.now_due()) == sorted(KINGDEE)
    name = next(iter(KINGDEE))
    started = s.begin(name)
    assert name not in s.now_due() and not s.is_due(name)
    assert s.due[name] == started + KINGDEE[name].refresh_interval()
    s.failed(name, started, 5.0)
    assert s.due[name] == started + 5.0


def test_a_request_waits_out_the_minimum_interval_and_wakes_the_loop() -> None:
    s = schedule(min_interval=30.0)
    name = next(iter(KINGDEE))
    started = s.begin(name)
    s.wake.clear()
    for _ in range(1000):
        s.request(name)
    assert s.wake.is_set()
    assert abs(s.due[name] - (started + 30.0)) < 0.01, "coalesced to one read, 30 s after"
    s.request("no_such_source")  # ignored
    assert "no_such_source" not in s.due
    s.read_now(name)  # an announced change: at once, minimum interval or not
    assert s.is_due(name)


async def test_the_loop_sleeps_until_the_next_read_or_a_wake() -> None:
    s = schedule()
    for name in KINGDEE:
        s.begin(name)
    began = time.monotonic()
    asyncio.get_running_loop().call_later(0.05, s.request, next(iter(KINGDEE)))
    await asyncio.wait_for(s._sleep(), timeout=5)
    assert time.monotonic() - began < 1.0, "woken by the request, not the 10-minute interval"


def test_the_contact_sync_reads_on_the_shared_schedule() -> None:
    settings = ExtractorSettings(
        dingtalk=DingTalkSettings(apps={"main": {"app_key": "k", "app_secret": "s"}}),
        refdata=ContactSourceSettings(min_interval_seconds=30),
    )
    sync = ContactSync(settings, None, None, DINGTALK)  # type: ignore[arg-type]
    users = next(n for n, s in DINGTALK.items() if s.dingtalk and s.dingtalk.kind == "users")
    depts = next(n for n, s in DINGTALK.items() if s.dingtalk and s.dingtalk.kind == "departments")
    for name in DINGTALK:
        sync.schedule.begin(name)
    sync.request(users, "u-1")  # one user: read at once by user/get, the full read stays put
    assert sync.keys[users] == {"u-1"} and not sync.schedule.is_due(users)
    sync.request(users)  # a full read: after the minimum interval
    assert not sync.schedule.is_due(users)
    assert sync.schedule.due[users] <= sync.schedule.last[users] + 30 + 0.01
    sync.on_event("main", "org_dept_create", {})  # a department changed: read them now
    assert sync.schedule.is_due(depts)
    started = sync.schedule.begin(depts)
    sync.schedule.failed(depts, started, RETRY_SECONDS)
    assert sync.schedule.due[depts] == started + 60.0
