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
4). ``tests/fault/test_events_gapnet_week.py`` runs the
same simulation with a shorter verification interval and asserts on it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from bench.kafka import run_with_bootstrap
from dingdee_common.kafka.clients import make_producer
from dingdee_common.kafka.topics import provision
from dingdee_common.observability.server import Health
from dingdee_common.quota import events_month
from dingdee_common.settings import KafkaSettings
from dingdee_common.web import start_site
from dingdee_extractor.app import ExtractorApp
from dingdee_extractor.dingtalk.client import DingTalkClient
from dingdee_extractor.emitter import Emitter
from dingdee_extractor.flows import FlowSource
from dingdee_extractor.gapnet import Sample
from dingdee_extractor.metrics import ExtractorMetrics
from dingdee_extractor.settings import (
    DingTalkSettings,
    EventsSettings,
    ExtractorSettings,
    PollSettings,
)
from dingdee_sandbox.demo_org import DEMO_APP, PROCESS_CODES
from dingdee_sandbox.dingtalk.app import GATEWAY, create_app
from dingdee_sandbox.dingtalk.config import Faults
from dingdee_sandbox.dingtalk.state import State
from dingdee_sandbox.dingtalk.stream import StreamGateway

HOUR_MS = 3_600_000
START_MS = 1_793_750_400_000  # 2026-11-05 00:00 CST
FLOWS = 30
APPROVALS_PER_MONTH = 1000
DROP_RATE = 0.05
STEP_H = 2
QUIET_STEP_H = 6
LONGEST_H = 6 * 24  # the longest an approval takes
OUTAGE_H, OUTAGE_LEN_H, RESTART_H = 60, 12, 108  # hours into the measured week
AUTH_REFUSALS = {"40014", "88", "40001"}
SAMPLE = 0.25  # the sampled verification's share of flows (EVENTS__VERIFY_SAMPLE)


@dataclass
class WeekResult:
    """What the simulated period cost and delivered."""

    approvals: int
    lists: int
    gets: int
    exact: bool
    missing: set[str]
    extra: set[str]
    lost_lateness_h: list[float] = field(default_factory=list)  # approvals whose event was lost
    gap_lateness_h: list[float] = field(default_factory=list)  # created + finished in a gap
    wall_s: float = 0.0
    days_run: float = 0.0

    @property
    def per_approval(self) -> float:
        return (self.lists + self.gets) / max(self.approvals, 1)


class _Extractor:
    """One extractor process: its app, listeners and their stop event."""

    def __init__(self, app: ExtractorApp) -> None:
        self.app = app
        self.stop = asyncio.Event()
        self.tasks = [asyncio.create_task(lst.run(self.stop)) for lst in app.listeners()]

    def listen(self) -> None:
        self.tasks = [asyncio.create_task(lst.run(self.stop)) for lst in self.app.listeners()]

    def deafen(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.tasks = []

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks), timeout=30)


class _Recorder:
    """Wraps a poller's emitter: when (simulated) each terminal snapshot was emitted."""

    def __init__(self, inner: Emitter, clock: Callable[[], int], into: dict[str, int]) -> None:
        self._inner, self._clock, self._into = inner, clock, into

    async def emit(self, **kwargs: Any) -> None:
        await self._inner.emit(**kwargs)
        if kwargs["instance"].get("status") in ("COMPLETED", "TERMINATED"):
            self._into.setdefault(kwargs["instance_id"], self._clock())

    async def flush(self) -> None:
        await self._inner.flush()


def _sources(codes: list[str]) -> list[FlowSource]:
    return [
        FlowSource(
            flow=f"flow-{n:02d}", app="main", process_code=code, start_date=date(2026, 11, 3)
        )
        for n, code in enumerate(codes)
    ]


class Week:
    """The simulated period (see the module docstring); ``run`` returns its :class:`WeekResult`."""

    def __init__(
        self,
        kafka: KafkaSettings,
        verify_days: float | None,
        days: int,
        seed: int,
        long_gaps: bool = True,
        verify_sample: float = 1.0,
    ):
        self.kafka, self.days, self.long_gaps = kafka, days, long_gaps
        self.rng = random.Random(seed)
        self.state = State(seed=seed, faults=Faults(qps=100_000))
        self.state.manual_now_ms = START_MS - 24 * HOUR_MS  # the warm-up day
        self.web = create_app(self.state)
        self.gateway: StreamGateway = self.web[GATEWAY]
        self.gateway.knobs.drop_rate, self.gateway.knobs.duplicate_rate = DROP_RATE, 0.02
        self.gateway.knobs.redeliver_seconds = 2
        self.events = EventsSettings(
            enabled=True, reconnect_max_seconds=0.5, verify_sample=verify_sample
        )
        if verify_days is not None:
            self.events = self.events.model_copy(
                update={"verify_interval_seconds": verify_days * 86_400}
            )
        self.codes = [PROCESS_CODES["petty-cash"], *(f"PROC-GAP-{n:02d}" for n in range(FLOWS - 1))]
        self.finishing: list[tuple[int, str, str]] = []
        self.finished_at: dict[str, int] = {}
        self.lost: set[str] = set()  # approvals whose finish event was lost
        self.arrived_at: dict[str, int] = {}
        self.ext: _Extractor | None = None
        self.long_gap = False
        self.in_gap: set[str] = set()  # created and finished in a long gap (listed when it closes)
        self.created_in_gap: set[str] = set()

    def now(self) -> int:
        return self.state.now_ms()

    async def run(self) -> WeekResult:
        began = time.monotonic()
        runner, port = await start_site(self.web)
        url = f"http://127.0.0.1:{port}"
        self.settings = ExtractorSettings(
            flows_file=Path("config/flows.yaml"),
            kafka=self.kafka,
            dingtalk=DingTalkSettings(
                base_url=url,
                apps={"main": {"app_key": DEMO_APP.app_key, "app_secret": DEMO_APP.app_secret}},
                qps=1000,
            ),
            poll=PollSettings(settle_seconds=0),
            events=self.events.model_copy(update={"base_url": url}),
        )
        self.producer: AIOKafkaProducer = make_producer(self.kafka)
        await self.producer.start()
        self.client = DingTalkClient(
            self.settings.dingtalk, ExtractorMetrics.create(CollectorRegistry())
        )
        try:
            self.ext = await self._start()
            await self._settled()
            counted_from = await self._steps()
        finally:
            if self.ext is not None:
                await self.ext.close()
            await self.producer.stop()
            await self.client.aclose()
            await runner.cleanup()
        used = _by_api(self.state)
        truth = {
            i.id for i in self.state.instances.values() if i.status in ("COMPLETED", "TERMINATED")
        }
        delivered = set(self.arrived_at)
        return WeekResult(
            approvals=len(truth),
            lists=used["list"] - counted_from["list"],
            gets=used["get"] - counted_from["get"],
            exact=delivered == truth and not self.finishing,
            missing=truth - delivered,
            extra=delivered - truth,
            lost_lateness_h=sorted(
                (self.arrived_at[p] - self.finished_at[p]) / HOUR_MS for p in self.lost & delivered
            ),
            gap_lateness_h=sorted(
                (self.arrived_at[p] - self.finished_at[p]) / HOUR_MS
                for p in self.in_gap & delivered
            ),
            wall_s=time.monotonic() - began,
            days_run=(self.now() - START_MS) / 86_400_000,
        )

    async def _start(self) -> _Extractor:
        metrics = ExtractorMetrics.create(CollectorRegistry())
        app = ExtractorApp(
            self.settings,
            _sources(self.codes),
            self.producer,
            self.client,
            metrics,
            Health(),
            clock=self.now,
        )
        await app.setup()
        for poller in app.pollers:
            poller._emitter = _Recorder(poller._emitter, self.now, self.arrived_at)  # type: ignore[assignment]
        return _Extractor(app)

    async def _settled(self) -> None:
        """Until every event sent was acknowledged (and the listener is connected)."""
        for _ in range(3000):
            if len(self.gateway.sockets) == 1 and not self.gateway.pending:
                await asyncio.sleep(0.005)  # the last handlers write their checkpoints
                return
            await asyncio.sleep(0.01)
        raise TimeoutError("events not settled")

    async def _steps(self) -> dict[str, int]:
        """Hour by hour on the sandbox clock: a warm-up day, the week, then quiet days until the
        last approval finished and one more verification interval passed (coarser steps)."""
        counted_from = _by_api(self.state)
        verify_h = int(self.events.verify_interval_seconds / 3600)
        week_end = 24 + self.days * 24
        total_h = week_end + LONGEST_H + verify_h + 24
        hour = 0
        while hour < total_h:
            self.state.manual_now_ms = START_MS + (hour - 24) * HOUR_MS
            at = hour - 24  # hours into the measured period
            if at == 0:
                counted_from = _by_api(self.state)
            await self._step(at, measured=0 <= at < self.days * 24)
            hour += STEP_H if hour < week_end else QUIET_STEP_H
        return counted_from

    async def _step(self, at: int, *, measured: bool) -> None:
        outage = (
            self.long_gaps and measured and OUTAGE_H <= at < OUTAGE_H + OUTAGE_LEN_H
        )  # listeners down
        restart = self.long_gaps and measured and at == RESTART_H  # the extractor process restarts
        daily = measured and at % 24 == 10  # the daily disconnection
        ext = self.ext
        if ext is not None and outage and at == OUTAGE_H:
            ext.deafen()
            await self.gateway.disconnect_all()
        if ext is not None and restart:
            await ext.close()
            self.ext = ext = None
        if ext is not None and daily:
            await self.gateway.disconnect_all()
        lose = outage or restart or daily
        self.long_gap = outage or restart
        self.gateway.knobs.drop_rate = 1.0 if lose else DROP_RATE
        self._approvals(measured, lose)
        self.gateway.knobs.drop_rate = DROP_RATE
        if ext is not None and outage and at == OUTAGE_H + OUTAGE_LEN_H - STEP_H:
            ext.listen()
        if restart:
            self.ext = ext = await self._start()
        if ext is None:
            return
        if not (outage and at < OUTAGE_H + OUTAGE_LEN_H - STEP_H):
            await self._settled()
        for poller in ext.app.pollers:  # the safety net's tick (every 10 min in production)
            await poller.cycle()

    def _approvals(self, measured: bool, lose: bool) -> None:
        now = self.now()
        per_step = APPROVALS_PER_MONTH / (30 * 24) * STEP_H
        for _ in range(_poisson(self.rng, per_step) if measured else 0):
            inst = self.state.create(self.rng.choice(self.codes))
            if self.long_gap:
                self.created_in_gap.add(inst.id)
            takes = min(LONGEST_H * HOUR_MS, int(self.rng.lognormvariate(1.8, 1.0) * HOUR_MS))
            action = self.rng.choice(["approve"] * 8 + ["refuse", "terminate"])
            self.finishing.append((now + takes, inst.id, action))
        for due, pid, action in [f for f in self.finishing if f[0] <= now]:
            pending = len(self.gateway.pending)
            self.state.finish(pid, action)
            self.finishing.remove((due, pid, action))
            self.finished_at[pid] = now
            if lose or len(self.gateway.pending) == pending:
                self.lost.add(pid)  # its finish event never reaches the extractor
            if self.long_gap and pid in self.created_in_gap:
                self.in_gap.add(pid)


async def simulate(
    kafka: KafkaSettings,
    *,
    verify_days: float | None = None,
    days: int = 7,
    seed: int = 19,
    long_gaps: bool = True,
    verify_sample: float = 1.0,
) -> WeekResult:
    """Run the simulated week; ``verify_days`` overrides the default verification interval;
    without ``long_gaps`` no listener outage and no restart (only the daily disconnections);
    ``verify_sample`` below 1 samples the verification (``EVENTS__VERIFY_SAMPLE``)."""
    return await Week(kafka, verify_days, days, seed, long_gaps, verify_sample).run()


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
    url = f"http://127.0.0.1:{port}"
    settings = ExtractorSettings(
        flows_file=Path("config/flows.yaml"),
        kafka=kafka,
        dingtalk=DingTalkSettings(
            base_url=url,
            apps={"main": {"app_key": DEMO_APP.app_key, "app_secret": DEMO_APP.app_secret}},
        ),  # the default per-API rate: DINGTALK__QPS 20 less QPS_MARGIN 5 %, 19 a second
        poll=PollSettings(settle_seconds=0),
        events=EventsSettings(enabled=True, base_url=url),
    )
    codes = [PROCESS_CODES["petty-cash"], *(f"PROC-GAP-{n:02d}" for n in range(FLOWS - 1))]
    producer = make_producer(kafka)
    await producer.start()
    metrics = ExtractorMetrics.create(CollectorRegistry())
    client = DingTalkClient(settings.dingtalk, metrics)
    app = ExtractorApp(settings, _sources(codes), producer, client, metrics, Health())
    emitted: dict[str, int] = {}
    finished: dict[str, int] = {}

    def micros() -> int:
        return time.monotonic_ns() // 1000

    await app.setup()
    for poller in app.pollers:
        poller._emitter = _Recorder(poller._emitter, micros, emitted)  # type: ignore[assignment]
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


async def _until(done: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if done():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"waiting for {what}")


def _poisson(rng: random.Random, mean: float) -> int:
    """A small Poisson draw (Knuth)."""
    limit, k, p = pow(2.718281828459045, -mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _by_api(state: State) -> dict[str, int]:
    """Answered calls so far by kind (``list``/``get``), from the sandbox's request log.

    Refusals of an expired token are left out: the simulated clock jumps two hours a step, past
    a token's lifetime, where a real client refreshes its token ahead of expiry.
    """
    out = {"list": 0, "get": 0}
    for r in state.requests:
        path = str(r.get("path", ""))
        if str(r.get("errcode")) in AUTH_REFUSALS:
            continue
        if path.endswith("listids") or path.endswith("instanceIds/query"):
            out["list"] += 1
        elif path.endswith("processinstance/get") or path.endswith("/processInstances"):
            out["get"] += 1
    return out


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
