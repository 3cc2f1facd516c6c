"""Answers real DingTalk gives that the plain sandbox never did (issue #15 item 3), one test per
shape, each against the sandbox's knob for it over real HTTP: none is classified permanent unless
the record is at fault, and the configuration errors among them are shown, not retried silently.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from dingdee_common.errors import Decision, PermanentError, TransientError, classify
from dingdee_common.kafka.clients import make_producer
from dingdee_common.observability.server import Health
from dingdee_common.settings import KafkaSettings
from dingdee_common.web import start_site
from dingdee_extractor.app import ExtractorApp
from dingdee_extractor.dingtalk.client import DingTalkClient, DingTalkPunishedError
from dingdee_extractor.doctor import process_code_error
from dingdee_extractor.flows import FlowSource
from dingdee_extractor.metrics import ExtractorMetrics
from dingdee_extractor.settings import (
    DingTalkSettings,
    EventsSettings,
    ExtractorSettings,
    PollSettings,
)
from dingdee_sandbox.dingtalk.app import create_app
from dingdee_sandbox.dingtalk.state import Faults, State
from tests.contract.test_dingtalk_client import APPS, PETTY, Env
from tests.helpers import poll_until

pytestmark = pytest.mark.contract


class Box(Env):
    async def control(self, path: str, body: dict[str, Any]) -> None:
        async with httpx.AsyncClient(base_url=self.url) as http:
            (await http.post(path, json=body)).raise_for_status()

    def listids_errcodes(self) -> list[Any]:
        return [r["errcode"] for r in self.state.requests if r["api"] == "listids"]


@pytest.fixture
async def box() -> AsyncIterator[Box]:
    state = State(seed=3)
    runner, port = await start_site(create_app(state))
    url = f"http://127.0.0.1:{port}"
    metrics = ExtractorMetrics.create(CollectorRegistry())
    settings = DingTalkSettings(
        base_url=url,
        apps=APPS,
        qps=200,
        timeout_seconds=2.0,
        punish_pause_seconds=0.5,
    )
    client = DingTalkClient(settings, metrics)
    yield Box(state, client, metrics, url)
    await client.aclose()
    await runner.cleanup()


def source(flow: str, code: str, days: int = 40) -> FlowSource:
    return FlowSource(
        flow=flow, app="main", process_code=code, start_date=date.today() - timedelta(days=days)
    )


async def extractor(
    box: Box, kafka: KafkaSettings, sources: list[FlowSource], **settings: Any
) -> tuple[ExtractorApp, Health, Any]:
    config = ExtractorSettings(
        kafka=kafka,
        dingtalk=DingTalkSettings(base_url=box.url, apps=APPS, qps=200),
        poll=settings.pop("poll", PollSettings(settle_seconds=0)),
        events=settings.pop("events", EventsSettings(base_url=box.url)),
    )
    producer = make_producer(kafka)
    await producer.start()
    health = Health()
    app = ExtractorApp(config, sources, producer, box.client, box.metrics, health)
    await app.setup()
    return app, health, producer


async def second_call_refused(box: Box) -> TransientError:
    """Two quick calls against a 1-per-second limit: the second is throttled."""
    pid = next(iter(box.state.instances))
    await box.client.get("main", pid)
    with pytest.raises(TransientError) as caught:
        await box.client.get("main", pid)
    return caught.value


class TestAnswerShapes:
    @pytest.mark.parametrize("flat", [False, True], ids=["in-88", "flat"])
    @pytest.mark.parametrize("code", ["90018", "90019", "90002"])
    async def test_throttle_codes_flat_or_in_88_are_transient_with_the_documented_pause(
        self, box: Box, code: str, flat: bool
    ) -> None:
        box.state.seed_demo(3)
        if code == "90002":
            box.state.faults = Faults(global_qps_rate=1.0, flat_throttle=flat)
            with pytest.raises(TransientError) as caught:
                await box.client.get("main", next(iter(box.state.instances)))
            exc = caught.value
        else:
            box.state.faults = Faults(qps=1, throttle_code=code, flat_throttle=flat)
            exc = await second_call_refused(box)
        last = box.state.requests[-1]["errcode"]
        assert last == (int(code) if flat else code)  # the sandbox answered the shape asked for
        assert classify(exc).decision is Decision.RETRY and exc.code == code
        assert exc.retry_after is not None
        if code == "90002":  # exponential from 1 s (dingtalk.md §5.4)
            assert exc.retry_after >= 1.0
        else:  # a 1-second window: the rest of this second (§5.4)
            assert 0 < exc.retry_after <= 1.0

    async def test_errcode_sent_as_a_string_reads_like_the_int(self, box: Box) -> None:
        box.state.seed_demo(3)
        box.state.faults = Faults(errcode_string=True, qps=1, flat_throttle=True)
        pid = next(iter(box.state.instances))
        now = box.state.now_ms()
        page = await box.client.listids("main", PETTY, now - 31 * 86_400_000, now, 0)
        assert page.ids and box.state.requests[-1]["errcode"] == "0"
        await asyncio.sleep(1.0)  # a fresh second for the two calls below
        throttled = await second_call_refused(box)
        assert box.state.requests[-1]["errcode"] == "90018"
        assert classify(throttled).decision is Decision.RETRY and throttled.code == "90018"
        box.state.faults = Faults(errcode_string=True)
        with pytest.raises(PermanentError, match="820005"):  # this record's fault: still so
            await box.client.get("main", "no-such-instance")
        assert box.state.requests[-1]["errcode"] == "820005"
        assert (await box.client.get("main", pid))["business_id"]

    @pytest.mark.parametrize("status", [200, 403])
    async def test_anti_abuse_ban_is_transient_paused_counted_and_not_hammered(
        self, box: Box, status: int
    ) -> None:
        box.state.seed_demo(3)
        pid = next(iter(box.state.instances))
        box.state.faults = Faults(punished=True, punish_status=status)  # HTTP status UNCONFIRMED
        with pytest.raises(DingTalkPunishedError) as caught:
            await box.client.get("main", pid)  # the token call is banned too
        exc = caught.value
        assert classify(exc).decision is Decision.RETRY and exc.code == "punished"
        assert exc.retry_after == pytest.approx(0.5, abs=0.1)
        calls = len(box.state.requests)
        with pytest.raises(DingTalkPunishedError):
            await box.client.get("main", pid)
        assert len(box.state.requests) == calls  # no call is made while the ban lasts
        punished = box.metrics.punished.labels("main")._value.get()
        assert punished == 1
        box.state.faults = Faults()
        await asyncio.sleep(0.6)
        assert (await box.client.get("main", pid))["business_id"]

    async def test_an_error_at_the_listing_cap_halves_the_window(
        self, box: Box, kafka: KafkaSettings
    ) -> None:
        box.state.seed_demo(100)
        box.state.faults = Faults(listing_cap=40, listing_cap_error=True, qps=500)
        poll = PollSettings(settle_seconds=0, listing_cap=40)
        app, _, producer = await extractor(box, kafka, [source("petty-cash", PETTY)], poll=poll)
        try:
            await app.pollers[0].cycle()
        finally:
            await producer.stop()
        assert 400002 in box.listids_errcodes()  # DingTalk refused the page past the cap
        fetched = {
            r["body"]["process_instance_id"] for r in box.state.requests if r["api"] == "get"
        }
        petty = {i for i, inst in box.state.instances.items() if inst.process_code == PETTY}
        assert len(petty) == 100 and fetched == petty

    async def test_stream_open_refused_is_a_configuration_error_while_polling_goes_on(
        self, box: Box, kafka: KafkaSettings
    ) -> None:
        box.state.seed_demo(5)
        await box.control("/_sandbox/stream", {"open_status": 403})
        events = EventsSettings(
            enabled=True, base_url=box.url, poll_interval_seconds=0.2, reconnect_max_seconds=0.2
        )
        app, health, producer = await extractor(
            box, kafka, [source("petty-cash", PETTY)], events=events
        )
        stop = asyncio.Event()
        with capture_logs() as logs:
            runner = asyncio.create_task(app.run(stop))
            try:
                await poll_until(lambda: not health.ready()[0], timeout=10, what="/readyz to fail")
                reason = health.ready()[1]
                assert "configuration error" in reason and "'main'" in reason
                assert "403" in reason and "streamNotEnabled" in reason
                await poll_until(
                    lambda: app.pollers[0].cp.last_cycle_at is not None,
                    timeout=10,
                    what="a poll cycle while the stream is refused",
                )
                assert 0 in box.listids_errcodes() and not health.ready()[0]
                await box.control("/_sandbox/stream", {"open_status": 0})
                await poll_until(lambda: health.ready()[0], timeout=10, what="/readyz to pass")
            finally:
                stop.set()
                await asyncio.wait_for(runner, 10)
                await producer.stop()
        refused = [e for e in logs if e["event"] == "extractor.events.refused"]
        assert refused and refused[0]["app"] == "main" and "streamNotEnabled" in refused[0]["error"]

    async def test_empty_listing_of_an_unknown_process_code_is_an_error(
        self, box: Box, kafka: KafkaSettings
    ) -> None:
        typo, quiet = source("typo-flow", "PROC-NO-SUCH-CODE"), source("quiet-flow", PETTY)
        app, health, producer = await extractor(box, kafka, [typo, quiet])
        stop = asyncio.Event()
        try:
            with capture_logs() as logs:
                for poller in app.pollers:
                    assert await app.outage.cycle(poller, stop)
        finally:
            await producer.stop()
        ok, reason = health.ready()
        assert not ok and "'typo-flow'" in reason and "PROC-NO-SUCH-CODE" in reason
        assert "formNotExist" in reason and "quiet-flow" not in reason
        errors = [e for e in logs if e["event"] == "extractor.flow.unknown_process_code"]
        assert [(e["flow"], e["process_code"]) for e in errors] == [
            ("typo-flow", "PROC-NO-SUCH-CODE")
        ]
        assert set(box.listids_errcodes()) == {0}  # every listing answered, empty
        box.state.faults = Faults(busy_rate=1.0)  # DingTalk busy says nothing about the code
        settings = ExtractorSettings(
            kafka=kafka,
            dingtalk=DingTalkSettings(base_url=box.url, apps=APPS),
            events=EventsSettings(base_url=box.url),
        )
        assert await process_code_error(settings, typo) is None
