"""The simulated week of ``bench_gapnet`` (issue #19), on the sandbox clock: :func:`simulate`.

An in-process DingTalk sandbox with Stream mode, a real broker and the extractor's own app: 1 000
approvals a month over 30 flows, taking hours to days; 5 % of events dropped, 2 % doubled; once a
day a disconnection whose events are lost, and (``long_gaps``) a 10-hour listener outage and an
extractor restart from its checkpoints. One warm-up day before the measured period, quiet days
after it until the last approval finished and every flow's verification ran again.
``tests/fault/test_events_gapnet_week.py`` runs it with a shorter verification interval.
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

from dingdee_common.kafka.clients import make_producer
from dingdee_common.observability.server import Health
from dingdee_common.settings import KafkaSettings
from dingdee_common.web import start_site
from dingdee_extractor.app import ExtractorApp
from dingdee_extractor.dingtalk.client import DingTalkClient
from dingdee_extractor.emitter import Emitter
from dingdee_extractor.flows import FlowSource
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

CODES = (PROCESS_CODES["petty-cash"], *(f"PROC-GAP-{n:02d}" for n in range(FLOWS - 1)))


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


class Recorder:
    """Wraps a poller's emitter: when (simulated) each terminal snapshot was emitted."""

    def __init__(self, inner: Emitter, clock: Callable[[], int], into: dict[str, int]) -> None:
        self._inner, self._clock, self._into = inner, clock, into

    async def emit(self, **kwargs: Any) -> None:
        await self._inner.emit(**kwargs)
        if kwargs["instance"].get("status") in ("COMPLETED", "TERMINATED"):
            self._into.setdefault(kwargs["instance_id"], self._clock())

    async def flush(self) -> None:
        await self._inner.flush()


def sources(codes: list[str]) -> list[FlowSource]:
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
        self.codes = list(CODES)
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
        return self._result(counted_from, began)

    def _result(self, counted_from: dict[str, int], began: float) -> WeekResult:
        """What the period delivered against the sandbox's finished approvals, and its calls
        since ``counted_from`` (the start of the measured period)."""
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
            sources(self.codes),
            self.producer,
            self.client,
            metrics,
            Health(),
            clock=self.now,
        )
        await app.setup()
        for poller in app.pollers:
            poller._emitter = Recorder(poller._emitter, self.now, self.arrived_at)  # type: ignore[assignment]
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
