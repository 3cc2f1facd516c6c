"""The pieces of a Kingdee outage run: the sandbox as its own process, the loader's signals.

The sandbox runs as a separate process so that it can be frozen (SIGSTOP) like a hung IIS; it is
driven and inspected only over its control API (``/_sandbox/config``, ``/_sandbox/bills``).
Shared by ``test_loader_backpressure.py`` and ``bench/bench_backpressure.py``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from dingdee_dev.procs import ManagedProcess

__all__ = ["LOADER_ENV", "LoaderProbe", "SandboxProcess"]

FORM = "ER_ExpReimbursement"
# short timeouts and backoffs, so that an outage is noticed in seconds and recovery is quick
LOADER_ENV = {
    "DINGDEE_KINGDEE__TIMEOUT_SECONDS": "2",
    "DINGDEE_KINGDEE__CONCURRENCY": "4",
    "DINGDEE_BATCH_MAX_RECORDS": "20",
    "DINGDEE_BATCH_LINGER_SECONDS": "0.05",
    "DINGDEE_RETRY__INITIAL_BACKOFF_SECONDS": "0.05",
    "DINGDEE_RETRY__MAX_BACKOFF_SECONDS": "0.5",
    "DINGDEE_RETRY__MAX_ATTEMPTS": "6",
    "DINGDEE_RETRY__DEADLINE_SECONDS": "30",
    "DINGDEE_BACKPRESSURE__PROBE_INITIAL_BACKOFF_SECONDS": "0.1",
    "DINGDEE_BACKPRESSURE__PROBE_MAX_BACKOFF_SECONDS": "1",
    "DINGDEE_SESSION_TIMEOUT_MS": "6000",
    "DINGDEE_TELEMETRY__LOG_LEVEL": "INFO",
}


class SandboxProcess:
    """``python -m dingdee_sandbox.kingdee`` on a free port, with its control API."""

    def __init__(self, workdir: Path, *args: str) -> None:
        self.port_file = workdir / f"kingdee-{time.monotonic_ns()}.port"
        self.proc = ManagedProcess.python_module(
            "sandbox-kingdee",
            "dingdee_sandbox.kingdee",
            "--port",
            "0",
            "--port-file",
            str(self.port_file),
            *args,
            log_path=workdir / "sandbox.log",
        )
        self.url = ""
        self.frozen = False

    async def start(self, timeout: float = 30) -> None:
        self.proc.start()
        deadline = time.monotonic() + timeout
        while not (self.port_file.exists() and self.port_file.read_text().strip()):
            if time.monotonic() > deadline or not self.proc.alive:
                raise RuntimeError(f"Kingdee sandbox did not start:\n{self.proc.tail()}")
            await asyncio.sleep(0.1)
        self.url = f"http://127.0.0.1:{int(self.port_file.read_text())}"

    def stop(self) -> None:
        self.thaw()
        self.proc.stop()

    def freeze(self) -> None:
        """SIGSTOP: connections are accepted by the kernel, nothing answers."""
        assert self.proc.pid is not None
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        if self.frozen and self.proc.pid is not None:
            os.kill(self.proc.pid, signal.SIGCONT)
        self.frozen = False

    async def configure(self, **patch: Any) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(f"{self.url}/_sandbox/config", json=patch)
        response.raise_for_status()

    async def numbers(self) -> list[str]:
        """Bill numbers stored, one entry per stored bill (a duplicate shows twice)."""
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.get(f"{self.url}/_sandbox/bills", params={"form_id": FORM})
        response.raise_for_status()
        return [b["number"] for b in response.json()["bills"]]

    async def saved_at(self, prefix: str) -> list[float]:
        """Save times (epoch seconds, the sandbox's clock) of the bills numbered ``prefix…``."""
        from datetime import datetime

        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.get(f"{self.url}/_sandbox/bills", params={"form_id": FORM})
        return sorted(
            datetime.fromisoformat(b["saved_at"]).timestamp()
            for b in response.json()["bills"]
            if b["number"].startswith(prefix)
        )

    async def stats(self) -> dict[str, int]:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(f"{self.url}/_sandbox/stats")
        stats: dict[str, int] = response.json()["stats"]
        return stats


class LoaderProbe:
    """What an SRE sees of the loader: ``/readyz`` and ``/metrics`` on its ops port."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    async def readyz(self) -> tuple[int, str]:
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(f"{self.base}/readyz")
        return response.status_code, str(response.json().get("reason", ""))

    async def metric(self, name: str) -> float | None:
        async with httpx.AsyncClient(timeout=5) as client:
            text = (await client.get(f"{self.base}/metrics")).text
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return None

    async def paused(self) -> bool:
        """Not ready because Kingdee is unavailable, and ``dingdee_kingdee_up`` is 0."""
        status, reason = await self.readyz()
        up = await self.metric("dingdee_kingdee_up")
        return status == 503 and "Kingdee unavailable" in reason and up == 0.0

    async def resumed(self) -> bool:
        status, _ = await self.readyz()
        return status == 200 and await self.metric("dingdee_kingdee_up") == 1.0
