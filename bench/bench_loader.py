"""Loader throughput as a fraction of the Kingdee sandbox's capacity, and the loader's peak RSS.

The sandbox runs as its own process with a fixed latency model (per call + per package) and serves
each session one call at a time, like Kingdee. Baseline: a bare client with the loader's
concurrency (one session per lane) posting signed BatchSaves of the loader's batch size as fast as
the sandbox answers — the sandbox's capacity at that concurrency and latency. Then the loader
process consumes bills from a real broker and writes the same kind of bills; its rate is taken
from the sandbox's own save timestamps of the measured bills (after a warm-up that also passes the
start-up existence-check window). Goal: ratio ≥ 0.9.

Run: ``.venv/bin/python -m bench loader`` (``BENCH_LOADER_N`` bills, default 6000).
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import orjson
from tests.integration.test_loader_service import DEMO_CREDENTIALS, make_bills, produce

from bench.kafka import bench_kafka
from dingdee_common.kingdee_signing import signature_headers
from dingdee_common.settings import KafkaSettings
from dingdee_dev.broker import free_port
from dingdee_dev.procs import ManagedProcess, wait_http_ok
from dingdee_sandbox.kingdee.demo import expense_model

GOAL = 0.9
CONCURRENCY = 4
BATCH = 50
CALL_S, PACKAGE_S = 0.05, 0.004
BATCH_PATH = "/k3cloud/Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.BatchSave.common.kdsvc"


def _sandbox(workdir: Path) -> tuple[ManagedProcess, str]:
    port_file = workdir / "kingdee.port"
    proc = ManagedProcess.python_module(
        "sandbox-kingdee",
        "dingdee_sandbox.kingdee",
        "--port",
        "0",
        "--port-file",
        str(port_file),
        "--latency-call-seconds",
        str(CALL_S),
        "--latency-package-seconds",
        str(PACKAGE_S),
        log_path=workdir / "sandbox.log",
    )
    proc.start()
    deadline = time.monotonic() + 30
    while not (port_file.exists() and port_file.read_text().strip()):
        if time.monotonic() > deadline or not proc.alive:
            raise RuntimeError(f"sandbox did not start: {proc.tail()}")
        time.sleep(0.1)
    return proc, f"http://127.0.0.1:{int(port_file.read_text())}"


def _signed() -> dict[str, str]:
    return signature_headers(
        BATCH_PATH,
        acct_id=DEMO_CREDENTIALS["DINGDEE_KINGDEE__ACCT_ID"],
        username=DEMO_CREDENTIALS["DINGDEE_KINGDEE__USERNAME"],
        app_id=DEMO_CREDENTIALS["DINGDEE_KINGDEE__APP_ID"],
        app_secret=DEMO_CREDENTIALS["DINGDEE_KINGDEE__APP_SECRET"],
        lcid=2052,
        org_num="0",
        timestamp=str(int(time.time())),
    )


async def _baseline(url: str, n: int) -> float:
    """Bills/s of bare signed BatchSaves on CONCURRENCY sessions (the sandbox's capacity)."""
    rng = random.Random(1)
    batches = [
        [expense_model(f"BASE{b:04d}{i:03d}", rng) for i in range(BATCH)] for b in range(n // BATCH)
    ]
    queue: asyncio.Queue[list[dict[str, object]]] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)

    async def lane() -> None:
        async with httpx.AsyncClient(timeout=30) as client:  # own cookie jar = own session
            while not queue.empty():
                body = {"formid": "ER_ExpReimbursement", "data": {"Model": queue.get_nowait()}}
                response = await client.post(
                    url + BATCH_PATH, content=orjson.dumps(body), headers=_signed()
                )
                response.raise_for_status()

    await asyncio.gather(*(lane() for _ in range(CONCURRENCY)))
    # measured like the loader: from the first to the last save in the sandbox's own clock
    stamps = await _saved_at(url, "BASE")
    return len(stamps) / (stamps[-1] - stamps[0])


async def _saved_at(url: str, prefix: str) -> list[float]:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(
            f"{url}/_sandbox/bills", params={"form_id": "ER_ExpReimbursement"}
        )
    return sorted(
        datetime.fromisoformat(b["saved_at"]).timestamp()
        for b in response.json()["bills"]
        if b["number"].startswith(prefix)
    )


async def _wait_saved(url: str, prefix: str, n: int, timeout: float = 300) -> list[float]:
    """Save timestamps of the ``prefix`` bills once all ``n`` are in the sandbox."""
    deadline = time.monotonic() + timeout
    stamps: list[float] = []
    while time.monotonic() < deadline:
        stamps = await _saved_at(url, prefix)
        if len(stamps) >= n:
            return stamps
        await asyncio.sleep(0.5)
    raise TimeoutError(f"only {len(stamps)} of {n} {prefix} bills saved after {timeout:.0f}s")


def _peak_rss_mib(pid: int | None) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _loader_rate(
    kafka: KafkaSettings, url: str, workdir: Path, n: int
) -> tuple[float, float]:
    port = free_port()
    env = {
        "DINGDEE_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "DINGDEE_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
        "DINGDEE_KINGDEE__SERVER_URL": f"{url}/k3cloud",
        "DINGDEE_KINGDEE__CONCURRENCY": str(CONCURRENCY),
        "DINGDEE_BATCH_MAX_RECORDS": str(BATCH),
        "DINGDEE_MAX_PENDING_RECORDS": "500",
        "DINGDEE_HTTP__HOST": "127.0.0.1",
        "DINGDEE_HTTP__PORT": str(port),
        "DINGDEE_GROUP_ID": f"bench-{uuid.uuid4().hex[:8]}",
        "DINGDEE_TELEMETRY__LOG_LEVEL": "WARNING",
        "DINGDEE_TELEMETRY__TRACING_ENABLED": "false",
        **DEMO_CREDENTIALS,
    }
    proc = ManagedProcess(
        "loader", [sys.executable, "-m", "dingdee_loader"], env=env, log_path=workdir / "loader.log"
    )
    proc.start()
    try:
        await wait_http_ok(f"http://127.0.0.1:{port}/readyz", timeout=60, process=proc)
        warm = make_bills(2000, 0.0, seed=3, prefix="WARM")
        await produce(kafka, warm.records)
        await _wait_saved(url, "WARM", 2000)
        measured = make_bills(n, 0.0, seed=4, prefix="MEAS")
        await produce(kafka, measured.records)
        stamps = await _wait_saved(url, "MEAS", n)
        return n / (stamps[-1] - stamps[0]), _peak_rss_mib(proc.pid)
    finally:
        proc.stop()


async def _run(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        async with bench_kafka(workdir) as kafka:
            sandbox, url = _sandbox(workdir)
            try:
                capacity = await _baseline(url, n)
                rate, rss = await _loader_rate(kafka, url, workdir, n)
            finally:
                sandbox.stop()
    model = CONCURRENCY * BATCH / (CALL_S + BATCH * PACKAGE_S)
    print(
        f"sandbox latency: {CALL_S * 1000:.0f} ms/call + {PACKAGE_S * 1000:.0f} ms/package; "
        f"concurrency {CONCURRENCY} sessions; batch {BATCH}"
    )
    print(f"sandbox capacity (bare client): {capacity:8.1f} bills/s  (latency model {model:.1f})")
    print(f"loader through Kafka:           {rate:8.1f} bills/s  ({n} bills after 2000 warm-up)")
    ratio = rate / capacity
    verdict = "OK" if ratio >= GOAL else "BELOW GOAL"
    print(f"ratio loader/capacity: {ratio:.2f}  (goal ≥ {GOAL}) {verdict}")
    print(f"loader peak RSS: {rss:.1f} MiB")


def main() -> None:
    """Measure and print the ratio and the peak RSS (``python -m bench loader``)."""
    asyncio.run(_run(int(os.environ.get("BENCH_LOADER_N", "6000"))))
