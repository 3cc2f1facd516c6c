"""Finish → bill: p99 from an approval's finish event to its bill saved in Kingdee, whole stack.

The extractor (events on), the transformer and the loader run as processes against the embedded
broker and both sandboxes (each its own process), as ``make run`` starts them. Once every service
is ready, approvals are created and approved in the DingTalk sandbox at a steady ``BENCH_RATE``
per second for ``BENCH_SECONDS``; each approve is the finish event the extractor's Stream
listener hears. Measured per approval: the Kingdee sandbox's ``saved_at`` of its bill minus the
wall time the approve returned (both on this machine's clock), printed as p50/p90/p99 against
the goal (p99 ≤ 3 s at 20 approvals a second, issue #19).

The extractor fetches each finished approval with one ``get``. DingTalk allows 20 calls a second
per app and API (contract §5.1; the sandbox enforces it, ``90018`` beyond); the extractor gives
every API its own token bucket at that limit less ``DINGDEE_DINGTALK__QPS_MARGIN`` (5 %): 19
``get`` a second. A steady load equal to that rate queues without bound, so the default settings
meet the goal up to 18 approvals a second (19 with a 2.5 % margin), and at a steady 20 the
fetches queue and the latency grows with the run: a 20/s limit cannot serve a steady 20/s with
any margin. The bench runs 15, 18, 19 and 20 a second (``BENCH_RATE``) and prints each with the
``get`` answers the sandbox throttled (``BENCH_QPS_MARGIN`` sets another margin), and the median
latency of the first and the last third of the run's approvals: a queue that grows shows there,
and "meets" needs both p99 ≤ 3 s and a steady run (``BENCH_SECONDS`` lengthens it).
Run: ``.venv/bin/python -m bench pipeline_latency``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from tests.helpers import demo_flows_file

from dingdee_dev.stack import Stack, StackConfig

ROOT = Path(__file__).resolve().parents[1]
PROCESS_CODE = "PROC-BYJ-7F3A2C91"  # the petty-cash flow of config/flows.yaml
FORM = "ER_ExpReimbursement"
RATES = [float(r) for r in os.environ.get("BENCH_RATE", "15,18,19,20").split(",")]
SECONDS = float(os.environ.get("BENCH_SECONDS", "20"))
GOAL_P99_S = 3.0
GROWING_S = 0.25  # the last third's median this much above the first third's: a queue grows
# the extractor's DINGDEE_DINGTALK__QPS_MARGIN (its default when unset)
MARGIN = {"DINGDEE_DINGTALK__QPS_MARGIN": m} if (m := os.environ.get("BENCH_QPS_MARGIN")) else {}


async def _approve_at_rate(client: httpx.AsyncClient, base: str, rate: float) -> dict[str, float]:
    """Create and approve ``rate`` approvals a second; business id → wall time of the finish.

    Paced by due times, so a slow call is caught up rather than stretching the run; the rate
    achieved is printed beside the result.
    """
    finished: dict[str, float] = {}
    total = int(rate * SECONDS)
    started = time.monotonic()
    for n in range(total):
        due = started + n / rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        made = await client.post(f"{base}/_sandbox/instances", json={"process_code": PROCESS_CODE})
        made.raise_for_status()
        inst = made.json()
        done = await client.post(f"{base}/_sandbox/instances/{inst['id']}/approve")
        done.raise_for_status()
        finished[inst["business_id"]] = time.time()
    achieved = total / max(time.monotonic() - started, 1e-9)
    print(f"  {total} approvals finished at {achieved:.1f}/s", flush=True)
    return finished


async def _saved(client: httpx.AsyncClient, base: str) -> dict[str, float]:
    answer = await client.get(f"{base}/_sandbox/bills", params={"form_id": FORM})
    answer.raise_for_status()
    bills: list[dict[str, Any]] = answer.json()["bills"]
    return {b["number"]: datetime.fromisoformat(b["saved_at"]).timestamp() for b in bills}


async def _throttled(client: httpx.AsyncClient, base: str) -> int:
    """``get`` calls the DingTalk sandbox answered ``90018`` so far."""
    answer = await client.get(f"{base}/_sandbox/stats")
    answer.raise_for_status()
    return int(answer.json()["requests"].get("get:90018", 0))


async def _one_rate(stack: Stack, rate: float) -> list[float]:
    async with httpx.AsyncClient(timeout=10) as client:
        throttled = await _throttled(client, stack.dingtalk_url)
        finished = await _approve_at_rate(client, stack.dingtalk_url, rate)
        deadline = time.monotonic() + 120
        latencies: list[float] = []
        while time.monotonic() < deadline:
            saved = await _saved(client, stack.kingdee_url)
            latencies = [  # in the order the approvals finished
                saved[f"BYJ{bid}"] - at for bid, at in finished.items() if f"BYJ{bid}" in saved
            ]
            if len(latencies) == len(finished):
                break
            await asyncio.sleep(0.5)
        throttled = await _throttled(client, stack.dingtalk_url) - throttled
    print(f"  get answers throttled by the sandbox (90018): {throttled}")
    if len(latencies) < len(finished):
        print(f"  only {len(latencies)} of {len(finished)} bills within 120 s")
    return latencies


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _run() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        config = StackConfig(
            workdir=Path(tmp),
            flows_file=demo_flows_file(),
            demo=0,
            service_env={
                "extractor": {
                    "DINGDEE_EVENTS__ENABLED": "true",
                    "DINGDEE_TELEMETRY__LOG_LEVEL": "WARNING",
                    **MARGIN,
                },
                "transformer": {"DINGDEE_TELEMETRY__LOG_LEVEL": "WARNING"},
                "loader": {"DINGDEE_TELEMETRY__LOG_LEVEL": "WARNING"},
            },
        )
        async with Stack(config) as stack:
            for name in config.services:
                await stack.wait_ready(name, timeout=180)
            for rate in RATES:
                latencies = await _one_rate(stack, rate)
                if not latencies:
                    print(f"{rate:>5.0f} approvals/s: no bill saved")
                    continue
                _print_rate(rate, latencies)


def _print_rate(rate: float, latencies: list[float]) -> None:
    """The quantiles, and whether the latency is steady: a load the ``get`` bucket cannot serve
    grows a queue, seen as the last third of the run's approvals waiting longer than the first.
    """
    p99 = _quantile(latencies, 0.99)
    third = max(1, len(latencies) // 3)
    first, last = statistics.median(latencies[:third]), statistics.median(latencies[-third:])
    growing = last - first > GROWING_S
    verdict = "meets" if p99 <= GOAL_P99_S and not growing else "misses"
    p50, p90 = statistics.median(latencies), _quantile(latencies, 0.9)
    print(
        f"{rate:>5.0f} approvals/s for {SECONDS:.0f}s: {len(latencies)} bills, "
        f"finish → bill p50 {p50:.2f}s  p90 {p90:.2f}s  p99 {p99:.2f}s; median first third "
        f"{first:.2f}s, last third {last:.2f}s ({'growing' if growing else 'steady'}; "
        f"{verdict} the steady p99 ≤ {GOAL_P99_S:.0f} s goal)",
        flush=True,
    )


def main() -> None:
    asyncio.run(_run())


if __name__ == "__main__":
    main()
