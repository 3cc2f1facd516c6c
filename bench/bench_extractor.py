"""Extractor benchmarks: DingTalk rate use during a backfill, quota use in a steady state.

1. Backfill: the achieved ``get`` rate against the configured per-(app, API) QPS (goal ≥ 0.95),
   and how many requests DingTalk (the sandbox) rejected for rate limits (goal 0).
2. Steady state over a simulated week in which approvals take hours to days: DingTalk calls per
   terminal approval and how late approvals arrive, for the naive re-fetch-every-open-instance-
   every-cycle baseline, the default schedule and later first re-checks (goal ≤ 1.5); projected
   monthly calls for 1 000 approvals a month. Events mode lists no schedule but verification and
   gap windows: ``bench_gapnet`` measures it as the extractor runs it (goal ≤ 1.1 at 30 flows).
3. Peak RSS of this process.
"""

from __future__ import annotations

import random
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from aiohttp import web
from prometheus_client import CollectorRegistry

from bench.kafka import run_with_bootstrap
from dingdee_common.contracts import Checkpoint
from dingdee_common.kafka.clients import make_producer
from dingdee_common.kafka.dlq import DeadLetterPublisher
from dingdee_common.kafka.topics import Topics, provision
from dingdee_common.quota import MONTH_SECONDS, Demand, project_month
from dingdee_common.schedule import DEFAULT, gets_per_approval
from dingdee_common.settings import KafkaSettings, RetrySettings
from dingdee_common.web import start_site
from dingdee_extractor.dingtalk.client import DingTalkClient
from dingdee_extractor.emitter import Emitter
from dingdee_extractor.flows import FlowSource
from dingdee_extractor.metrics import ExtractorMetrics
from dingdee_extractor.poller import FlowPoller
from dingdee_extractor.settings import DingTalkSettings, PollSettings
from dingdee_sandbox.demo_org import DEMO_APP, PROCESS_CODES
from dingdee_sandbox.dingtalk.app import create_app
from dingdee_sandbox.dingtalk.state import Faults, State

HOUR_MS = 3_600_000
QPS = 18.0


async def serve(state: State) -> tuple[web.AppRunner, str]:
    runner, port = await start_site(create_app(state))
    return runner, f"http://127.0.0.1:{port}"


async def make_poller(
    kafka: KafkaSettings,
    url: str,
    poll: PollSettings,
    qps: float,
    clock: Callable[[], int] | None,
    start_ms: int,
) -> tuple[FlowPoller, Callable[[], Awaitable[None]]]:
    topics = Topics(kafka.topic_prefix)
    producer = make_producer(kafka)
    await producer.start()
    metrics = ExtractorMetrics.create(CollectorRegistry())
    apps = {DEMO_APP.name: {"app_key": DEMO_APP.app_key, "app_secret": DEMO_APP.app_secret}}
    client = DingTalkClient(DingTalkSettings(base_url=url, apps=apps, qps=qps), metrics)
    source = FlowSource(
        flow="petty-cash",
        app="main",
        process_code=PROCESS_CODES["petty-cash"],
        start_date="2026-01-01",
    )

    async def save(_: Checkpoint) -> None:
        return None

    poller = FlowPoller(
        source,
        Checkpoint(flow="petty-cash", watermark_ms=start_ms),
        client=client,
        emitter=Emitter(producer, topics.approvals_raw),
        save=save,
        dlq=DeadLetterPublisher(producer, topics, "extractor"),
        metrics=metrics,
        poll=poll,
        retry=RetrySettings(max_attempts=20),
        concurrency=8,
        clock=clock,
    )

    async def close() -> None:
        await producer.stop()
        await client.aclose()

    return poller, close


async def backfill_rate(kafka: KafkaSettings) -> dict[str, float]:
    state = State(seed=3, faults=Faults(qps=20))
    state.seed_demo(900)
    runner, url = await serve(state)
    now = state.now_ms()
    poll = PollSettings(settle_seconds=0, window_max_days=1, sweep_interval_seconds=10**9)
    poller, close = await make_poller(kafka, url, poll, QPS, None, now - 31 * 24 * HOUR_MS)
    try:
        started = time.monotonic()
        await poller.cycle()
        elapsed = time.monotonic() - started
    finally:
        await close()
        await runner.cleanup()
    gets = [r["at"] for r in state.requests if r["path"].endswith("/get")]
    rejected = sum(1 for r in state.requests if r["errcode"] == "90018")
    rate = (len(gets) - 1) / (gets[-1] - gets[0]) if len(gets) > 1 else 0.0
    return {
        "gets": len(gets),
        "rate": rate,
        "ratio": rate / QPS,
        "rejected": rejected,
        "seconds": elapsed,
    }


def durations(rng: random.Random) -> float:
    """Hours an approval takes: log-normal, median ~6 h, a tail of several days."""
    return min(24 * 6.0, rng.lognormvariate(1.8, 1.0))


@dataclass
class Week:
    """What a simulated week of polling cost and how late approvals arrived."""

    calls: int
    lists: int
    gets: int
    terminals: int
    cycles: int
    latency_hours: list[float]

    @property
    def per_approval(self) -> float:
        return self.calls / max(self.terminals, 1)

    def latency(self, q: float) -> float:
        ordered = sorted(self.latency_hours)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

    def month(self, approvals: int, interval_s: float) -> float:
        """Projected monthly calls for ``approvals`` a month (the model of dingdee quota)."""
        demand = Demand(
            gets_per_second=approvals * self.gets / max(self.terminals, 1) / MONTH_SECONDS,
            lists_per_cycle=self.lists / max(self.cycles, 1),
            flows=1,
        )
        return project_month(0, demand, interval_s, MONTH_SECONDS)


async def steady_state(kafka: KafkaSettings, poll: PollSettings, cycle_minutes: int) -> Week:
    """A simulated week of ~2 approvals an hour taking hours to days, polled every
    ``cycle_minutes``.
    """
    rng = random.Random(11)
    state = State(seed=5, faults=Faults(qps=10_000))
    start = 1_793_750_400_000
    state.manual_now_ms = start
    runner, url = await serve(state)
    poller, close = await make_poller(kafka, url, poll, 10_000, state.now_ms, start - HOUR_MS)
    finishing: list[tuple[int, str]] = []
    finished_at: dict[str, int] = {}
    arrived_at: dict[str, int] = {}
    cycles = 0
    try:
        step_ms = cycle_minutes * 60_000
        for step in range(7 * 24 * HOUR_MS // step_ms):
            state.manual_now_ms = start + step * step_ms
            for _ in range(sum(rng.random() < 0.02 * cycle_minutes / 30 for _ in range(50))):
                inst = state.create(PROCESS_CODES["petty-cash"])
                finishing.append((inst.create_ms + int(durations(rng) * HOUR_MS), inst.id))
            for due, pid in [f for f in finishing if f[0] <= state.manual_now_ms]:
                state.finish(pid, "approve")
                finished_at[pid] = state.manual_now_ms
                finishing.remove((due, pid))
            await poller.cycle()
            cycles += 1
            for pid in finished_at.keys() - arrived_at.keys():
                if pid in poller.cp.emitted:
                    arrived_at[pid] = state.manual_now_ms
    finally:
        await close()
        await runner.cleanup()
    usage = poller.cp.usage
    assert usage is not None
    return Week(
        calls=poller.calls,
        lists=usage.list_calls,
        gets=usage.get_calls,
        terminals=poller.terminals,
        cycles=cycles,
        latency_hours=[(arrived_at[p] - finished_at[p]) / HOUR_MS for p in arrived_at],
    )


def adaptive(first_check_hours: float) -> PollSettings:
    """First re-check after ``first_check_hours``, then doubling, capped at 24 h."""
    return PollSettings(
        settle_seconds=0,
        open_recheck_initial_seconds=first_check_hours * 3600,
        open_recheck_factor=2,
        open_recheck_max_seconds=max(24 * 3600, first_check_hours * 3600),
    )


def describe(week: Week) -> str:
    return (
        f"{week.per_approval:.2f} calls/approval ({week.gets} get + {week.lists} listids for "
        f"{week.terminals} approvals), arrival after finish p50 {week.latency(0.5):.1f} h, "
        f"p90 {week.latency(0.9):.1f} h"
    )


async def run(bootstrap: str) -> None:
    kafka = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix="bench.")
    await provision(kafka)
    b = await backfill_rate(kafka)
    print(
        f"backfill: {b['gets']} gets in {b['seconds']:.1f}s, achieved {b['rate']:.2f} req/s "
        f"of {QPS:.0f} configured = {b['ratio']:.3f} (goal >= 0.95); "
        f"rejected for rate limits: {b['rejected']:.0f} (goal 0)"
    )
    print(
        "steady state, polling only (simulated week, ~2 approvals/hour taking hours to days, "
        "the same approvals in every run; goal <= 1.5 calls per terminal approval):"
    )
    naive = PollSettings(
        settle_seconds=0,
        open_recheck_initial_seconds=1,
        open_recheck_factor=1,
        open_recheck_max_seconds=1,
    )
    default_week = None
    for minutes in (30, 120):
        default_week = await steady_state(kafka, PollSettings(settle_seconds=0), minutes)
        print(
            f"  {minutes}-min cycles, naive re-fetch of every open instance every cycle: "
            + describe(await steady_state(kafka, naive, minutes))
        )
        model = gets_per_approval(replace(DEFAULT, interval_s=minutes * 60.0))
        print(
            f"  {minutes}-min cycles, default schedule (first re-check after 1 min): "
            + describe(default_week)
            + f"; get/approval {default_week.gets / max(default_week.terminals, 1):.2f}, "
            f"the quota model's {model:.2f} (dingdee_common.schedule)"
        )
    polling = None
    for hours in (4, 8, 12, 24):
        week = await steady_state(kafka, adaptive(hours), 120)
        polling = week if hours == 24 else polling
        print(f"  120-min cycles, first re-check after {hours} h: {describe(week)}")
    assert polling is not None and default_week is not None
    # Events mode is not a poll schedule: the extractor lists only verification and gap windows
    # (gapnet). Its calls per approval are measured as it runs by bench_gapnet, not here.
    print("events on: see `python -m bench gapnet` (the gap-aware safety net, 30 flows)")
    print(
        "projected monthly calls for 1 000 approvals/month (dingdee quota model, one flow): "
        f"polling only with the defaults (30-s cycles) {default_week.month(1000, 30):.0f}, "
        f"every 2 h with the first re-check after 24 h {polling.month(1000, 7200):.0f} "
        "(standard edition allowance: a few thousand)"
    )
    print(
        "get calls per approval polling with the default schedule at its default 30-s cycles, "
        f"the quota model's (dingdee quota plan, the doctor): {gets_per_approval(DEFAULT):.2f}"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak:.0f} MiB")


def main() -> None:
    run_with_bootstrap(run)


if __name__ == "__main__":
    main()
