"""Recovery after a Kingdee outage: from the end of the outage to the last bill loaded.

The loader (its own process, real broker) loads bills into the Kingdee sandbox (its own process);
once some are saved, the sandbox answers HTTP 503 to every call for ``BENCH_OUTAGE_S`` seconds
(the loader pauses and probes), then answers again. Measured: the time from the end of the outage
to the last bill's save (the sandbox's own clock), printed as a ratio to the outage length and
against the goal: ≤ 2 × the configured maximum probe backoff (a probe comes at most one backoff
after Kingdee is back; the held bills then need one round of checks and saves).

Run: ``.venv/bin/python -m bench backpressure``.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.fault.kingdee_outage import LOADER_ENV, LoaderProbe, SandboxProcess
from tests.integration.test_loader_service import loader_process, make_bills, produce

from bench.kafka import bench_kafka
from dingdee_common.settings import KafkaSettings
from dingdee_dev.procs import wait_http_ok

BILLS = 1000
MAX_BACKOFF_S = 5.0
OUTAGE_S = float(os.environ.get("BENCH_OUTAGE_S", "60"))


async def _until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")


async def _measure(kafka: KafkaSettings, workdir: Path) -> float:
    """Seconds from the end of the outage to the last bill saved."""
    box = SandboxProcess(
        workdir, "--latency-call-seconds", "0.02", "--latency-package-seconds", "0.004"
    )
    await box.start()
    env = {
        **LOADER_ENV,
        "DINGDEE_BACKPRESSURE__PROBE_MAX_BACKOFF_SECONDS": str(MAX_BACKOFF_S),
        "DINGDEE_TELEMETRY__LOG_LEVEL": "WARNING",
    }
    proc, port = loader_process(
        kafka, box.url, f"bench-{uuid.uuid4().hex[:8]}", workdir / "loader.log", **env
    )
    bills = make_bills(BILLS, 0.0, seed=5, prefix="BP")
    try:
        await produce(kafka, bills.records)
        proc.start()
        await wait_http_ok(f"http://127.0.0.1:{port}/healthz", timeout=60, process=proc)

        async def some_saved() -> bool:
            return len(await box.numbers()) >= BILLS // 5

        await _until(some_saved, 120, "the first bills saved")
        await box.configure(http_5xx_rate=1.0)
        await _until(LoaderProbe(port).paused, 60, "the loader paused")
        await asyncio.sleep(OUTAGE_S)
        await box.configure(http_5xx_rate=0.0)
        ended = time.time()

        async def all_saved() -> bool:
            return len(set(await box.numbers())) >= BILLS

        await _until(all_saved, OUTAGE_S + 300, "every bill saved")
        numbers = await box.numbers()
        assert len(numbers) == len(set(numbers)) == BILLS, "not the exact set"
        return (await box.saved_at("BP"))[-1] - ended
    finally:
        proc.stop()
        box.stop()


async def _run() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        async with bench_kafka(workdir) as kafka:
            recovery = await _measure(kafka, workdir)
    goal = 2 * MAX_BACKOFF_S
    print(f"Kingdee outage: every call HTTP 503 for {OUTAGE_S:.0f}s; {BILLS} bills")
    print(f"probe backoff capped at {MAX_BACKOFF_S:.1f}s (DINGDEE_BACKPRESSURE__PROBE_MAX_…)")
    print(f"end of outage → last bill loaded: {recovery:6.2f}s")
    print(f"ratio to the outage length:       {recovery / OUTAGE_S:6.3f}")
    verdict = "meets" if recovery <= goal else "MISSES"
    print(f"goal ≤ 2 × max backoff = {goal:.1f}s: {recovery / goal:.2f} of it ({verdict} the goal)")


def main() -> None:
    asyncio.run(_run())
