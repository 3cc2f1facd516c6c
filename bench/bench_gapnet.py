"""The events-mode safety net over 30 flows (issue #19): calls per approval, exactness, lateness.

A simulated week on the sandbox clock (an in-process DingTalk sandbox with Stream mode, a real
broker): 1 000 approvals a month spread over 30 flows, taking hours to days; 5 % of events
dropped, 2 % doubled; once a day a disconnection whose events are lost (DingTalk not
redelivering them) — the issue's scenario — and then the same week with a 10-hour listener
outage and an extractor restart from its checkpoints, their events lost too. The extractor runs
one warm-up day before the measured period and quiet days after it until the last approval
finished and every flow's verification ran again.

Reported: answered calls over the measured period (listids and get), calls per approval for a
month by the ``dingdee quota`` model with the measured ``get`` per approval (the week's listings
are mostly the warm-up's and quiet days' verifications), whether the delivered set is exact,
how late the approvals whose event was lost arrived (simulated hours after finishing, against
the verification interval), and the wall time; then the first week again with a sampled
verification (a quarter of the flows each interval, ``EVENTS__VERIFY_SAMPLE``, DESIGN §5 point
4). The simulation is ``bench/gapweek.py``; ``tests/fault/test_events_gapnet_week.py`` runs it
with a shorter verification interval and asserts on it. Also measured: event → snapshot latency
on the real clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry

from bench.gapweek import (
    APPROVALS_PER_MONTH,
    CODES,
    DROP_RATE,
    FLOWS,
    OUTAGE_LEN_H,
    STEP_H,
    Recorder,
    WeekResult,
    simulate,
    sources,
)
from bench.kafka import run_with_bootstrap
from dingdee_common.kafka.clients import make_producer
from dingdee_common.kafka.topics import provision
from dingdee_common.observability.server import Health
from dingdee_common.quota import events_month
from dingdee_common.settings import KafkaSettings
from dingdee_common.web import start_site
from dingdee_extractor.app import ExtractorApp
from dingdee_extractor.dingtalk.client import DingTalkClient
from dingdee_extractor.gapnet import Sample
from dingdee_extractor.metrics import ExtractorMetrics
from dingdee_extractor.settings import (
    DingTalkSettings,
    EventsSettings,
    ExtractorSettings,
    PollSettings,
)
from dingdee_sandbox.demo_org import DEMO_APP
from dingdee_sandbox.dingtalk.app import GATEWAY, create_app
from dingdee_sandbox.dingtalk.config import Faults
from dingdee_sandbox.dingtalk.state import State
from dingdee_sandbox.dingtalk.stream import StreamGateway

SAMPLE = 0.25  # the sampled verification's share of flows (EVENTS__VERIFY_SAMPLE)


async def event_latency(
    kafka: KafkaSettings, approvals: int = 400, rate: float = 20.0
) -> list[float]:
    """Seconds from an approval's finish to its snapshot being emitted, on the real clock.

    30 flows, events on (no drops), approvals finished at ``rate`` a second across the flows.
    """
    state = State(seed=5, faults=Faults(qps=100_000))
    web_app = create_app(state)
    gateway: StreamGateway = web_app[GATEWAY]
    runner, port = await start_site(web_app)
    settings = _latency_settings(kafka, f"http://127.0.0.1:{port}")
    codes = list(CODES)
    producer = make_producer(kafka)
    await producer.start()
    metrics = ExtractorMetrics.create(CollectorRegistry())
    client = DingTalkClient(settings.dingtalk, metrics)
    app = ExtractorApp(settings, sources(codes), producer, client, metrics, Health())
    emitted: dict[str, int] = {}
    finished: dict[str, int] = {}

    def micros() -> int:
        return time.monotonic_ns() // 1000

    await app.setup()
    for poller in app.pollers:
        poller._emitter = Recorder(poller._emitter, micros, emitted)  # type: ignore[assignment]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(lst.run(stop)) for lst in app.listeners()]
    try:
        await _until(lambda: len(gateway.sockets) == 1, "the event stream")
        ids = [state.create(codes[n % len(codes)]).id for n in range(approvals)]
        await _until(lambda: not gateway.pending, "the start events acked")
        began = time.monotonic()
        for n, pid in enumerate(ids):
            await asyncio.sleep(max(0.0, began + n / rate - time.monotonic()))
            finished[pid] = micros()
            state.finish(pid, "approve")
        await _until(lambda: len(emitted.keys() & finished.keys()) == len(ids), "snapshots")
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
        await producer.stop()
        await client.aclose()
        await runner.cleanup()
    return sorted((emitted[p] - finished[p]) / 1e6 for p in finished if p in emitted)


def _latency_settings(kafka: KafkaSettings, url: str) -> ExtractorSettings:
    """Events on, at the default per-API rate: DINGTALK__QPS 20 less QPS_MARGIN 5 %, 19 a
    second."""
    return ExtractorSettings(
        flows_file=Path("config/flows.yaml"),
        kafka=kafka,
        dingtalk=DingTalkSettings(
            base_url=url,
            apps={"main": {"app_key": DEMO_APP.app_key, "app_secret": DEMO_APP.app_secret}},
        ),
        poll=PollSettings(settle_seconds=0),
        events=EventsSettings(enabled=True, base_url=url),
    )


async def _until(done: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if done():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"waiting for {what}")


async def run(bootstrap: str) -> None:
    kafka = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix="bench.gapnet.")
    await provision(kafka)
    ev = EventsSettings()
    verify_d = ev.verify_interval_seconds / 86_400
    print(
        f"events on, {FLOWS} flows, ~{APPROVALS_PER_MONTH} approvals/month for a simulated week "
        f"(5 % of events dropped, 2 % doubled, a disconnection a day whose events are lost), then "
        f"quiet days until every flow was verified again (every {verify_d:.0f} days):"
    )
    week = await simulate(kafka, long_gaps=False)
    _report(week, verify_d)
    gets = week.gets / max(week.approvals, 1)
    month = events_month(
        APPROVALS_PER_MONTH,
        FLOWS,
        verify_interval_s=ev.verify_interval_seconds,
        gets_per_approval=gets,
        long_gaps_per_month=0,
    )
    print(
        f"  a month by the quota model (measured get/approval, each flow's verification): "
        f"{month:,.0f} calls = {month / APPROVALS_PER_MONTH:.3f} calls/approval (goal <= 1.1; "
        f"the 12-hourly safety net before: 3.74); wall time {week.wall_s:.1f}s"
    )
    await _sampled(kafka, ev)
    await _latencies(kafka)
    print(
        f"the same week with a {OUTAGE_LEN_H - STEP_H}-h listener outage and an extractor "
        "restart too, their events lost:"
    )
    rough_kafka = kafka.model_copy(update={"topic_prefix": "bench.gapnet.rough."})
    await provision(rough_kafka)  # its own checkpoints: the first run's are a month ahead
    rough = await simulate(rough_kafka)
    _report(rough, verify_d)
    if rough.gap_lateness_h:
        print(
            f"  {len(rough.gap_lateness_h)} approvals created and finished inside the outage or "
            f"the restart arrived at most {rough.gap_lateness_h[-1]:.0f} h after finishing "
            "(listed at the first tick after the gap closed; 2-h simulated ticks)"
        )
    print(f"  wall time {rough.wall_s:.1f}s")


async def _latencies(kafka: KafkaSettings) -> None:
    """Event → snapshot on the real clock, below and at the per-API rate."""
    for n, rate in enumerate((5.0, 20.0)):
        lat_kafka = kafka.model_copy(update={"topic_prefix": f"bench.gapnet.latency{n}."})
        await provision(lat_kafka)
        lat = await event_latency(lat_kafka, approvals=200, rate=rate)
        print(
            f"event -> snapshot, real clock, {len(lat)} approvals finished at {rate:.0f}/s over "
            f"{FLOWS} flows: p50 {lat[len(lat) // 2]:.3f}s, p99 "
            f"{lat[int(0.99 * (len(lat) - 1))]:.3f}s (goal p99 <= 2 s; `get` is paced to "
            "DINGTALK__QPS less QPS_MARGIN, 19/s by default, so 20 finishes/s queue)"
        )


async def _sampled(kafka: KafkaSettings, ev: EventsSettings, share: float = SAMPLE) -> None:
    """The first week again with a sampled verification (``EVENTS__VERIFY_SAMPLE``)."""
    turns = Sample(share).rounds
    print(
        f"the same week with a sampled verification ({share:.0%} of the flows each interval, "
        f"each flow at least every {turns} intervals):"
    )
    sampled_kafka = kafka.model_copy(update={"topic_prefix": "bench.gapnet.sampled."})
    await provision(sampled_kafka)
    week = await simulate(sampled_kafka, long_gaps=False, verify_sample=share)
    _report(week, ev.verify_interval_seconds / 86_400 * turns)
    month = events_month(
        APPROVALS_PER_MONTH,
        FLOWS,
        verify_interval_s=ev.verify_interval_seconds,
        gets_per_approval=week.gets / max(week.approvals, 1),
        long_gaps_per_month=0,
        verify_sample=share,
        lost_events=DROP_RATE,
    )
    print(
        f"  measured {week.per_approval:.3f} calls/approval over the period ({week.lists} "
        f"listids); a month by the quota model: {month / APPROVALS_PER_MONTH:.3f} calls/approval "
        f"(with the alarms {DROP_RATE:.0%} dropped events raise, each listing every flow; a flow "
        f"listed every {turns} intervals lists {turns} intervals' ids, a page per 20, so sampling "
        f"saves only where flows are quiet); wall time {week.wall_s:.1f}s"
    )


def _report(week: WeekResult, verify_d: float) -> None:
    print(
        f"  measured: {week.gets} get for {week.approvals} approvals = "
        f"{week.gets / max(week.approvals, 1):.3f} get/approval; {week.lists} listids over "
        f"{week.days_run:.0f} days ({FLOWS} flows); exact set: {week.exact}"
        + (f" (missing {len(week.missing)}, extra {len(week.extra)})" if not week.exact else "")
    )
    late = week.lost_lateness_h
    if late:
        print(
            f"  {len(late)} approvals whose finish event was lost arrived p50 "
            f"{late[len(late) // 2]:.0f} h, max {late[-1]:.0f} h after finishing (goal: within "
            f"the verification interval, {verify_d * 24:.0f} h)"
        )


def main() -> None:
    run_with_bootstrap(run)


if __name__ == "__main__":
    main()
