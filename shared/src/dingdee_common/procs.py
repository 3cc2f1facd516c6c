"""Child processes for the local stack and the tests: start, wait until ready, SIGKILL, stop.

Every service runs as its own OS process, as in production; this is how ``make run`` and the
end-to-end and fault tests start them.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

__all__ = ["ManagedProcess", "wait_http_ok"]


_STARTED: list[ManagedProcess] = []  # strong references: a forgotten child is still found


@atexit.register
def _kill_leftovers() -> None:
    """A child outlives its parent only by mistake (a test that forgot ``stop``): kill it."""
    for process in _STARTED:
        if process.alive:
            process.kill()


class ManagedProcess:
    """One child process in its own session, with its output in a log file.

    Children still running when the parent exits normally are killed then (``atexit``).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_path
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @classmethod
    def python_module(cls, name: str, module: str, *args: str, **kwargs: object) -> ManagedProcess:
        """``python -m module args…`` with the current interpreter."""
        return cls(name, [sys.executable, "-m", module, *args], **kwargs)  # type: ignore[arg-type]

    def start(self) -> None:
        if self.alive:
            raise RuntimeError(f"{self.name} is already running")
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(  # noqa: S603 - argv is built by our own code
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.starts += 1
        if self not in _STARTED:
            _STARTED.append(self)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crashed pod would die."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, wait, then SIGKILL; return the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def tail(self, lines: int = 40) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(text[-lines:])


async def wait_http_ok(
    url: str, *, timeout: float, process: ManagedProcess | None = None, what: str = ""
) -> None:
    """Wait until GET ``url`` answers 2xx; fail early if ``process`` died."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2.0) as client:
        while True:
            if process is not None and process.proc is not None and not process.alive:
                raise RuntimeError(
                    f"{process.name} exited with {process.proc.returncode} while waiting for "
                    f"{what or url}:\n{process.tail()}"
                )
            try:
                response = await client.get(url)
                if response.is_success:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                tail = process.tail() if process else ""
                raise TimeoutError(f"{what or url} not ready after {timeout:.0f}s\n{tail}")
            await asyncio.sleep(0.2)
