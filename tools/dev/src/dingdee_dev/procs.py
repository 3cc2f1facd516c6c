"""Child processes for the local stack and the tests: start, wait until ready, SIGKILL, stop, and
restart them when they exit (:class:`Supervisor`).

Every service runs as its own OS process, as in production; this is how ``make run`` and the
end-to-end and fault tests start them.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from dingdee_common.retry import backoff_delay
from dingdee_common.settings import RetrySettings

__all__ = ["ManagedProcess", "RestartState", "Supervisor", "wait_http_ok"]


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

    @property
    def returncode(self) -> int | None:
        """The exit code once the process has exited (negative: killed by that signal)."""
        return self.proc.poll() if self.proc else None

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (and SIGCONT, were it frozen), wait, then SIGKILL; return the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
                os.killpg(self.proc.pid, signal.SIGCONT)
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


@dataclass
class RestartState:
    """What :class:`Supervisor` knows of one process: restarts so far and the one pending."""

    restarts: int = 0
    backoff_step: int = 0  # restarts since the process last stayed up ``stable_seconds``
    last_exit: int | None = None
    restart_at: float | None = None  # monotonic time of the pending restart
    up_since: float | None = None

    def describe(self, now: float) -> str:
        """``running``, or ``exited -9, restart in 1.2s`` while a restart is pending."""
        if self.restart_at is None:
            return "running"
        return f"exited {self.last_exit}, restart in {max(self.restart_at - now, 0):.1f}s"


class Supervisor:
    """Restarts the processes it watches when they exit, as the kubelet restarts a container.

    Like a pod with ``restartPolicy: Always``: any exit (a crash, SIGKILL, even code 0) is followed
    by a start after a backoff that grows exponentially with each consecutive restart up to
    ``policy.max_backoff_seconds`` (``retry.backoff_delay``, full jitter), and starts again from
    ``policy.initial_backoff_seconds`` once a process has stayed up ``stable_seconds``. Processes
    never started, or stopped through :meth:`ManagedProcess.stop` after :meth:`close`, are left
    alone. :meth:`check` is one step; :meth:`run` repeats it until cancelled.
    """

    def __init__(
        self,
        processes: Mapping[str, ManagedProcess],
        policy: RetrySettings,
        *,
        stable_seconds: float = 60.0,
        interval: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        self.processes = dict(processes)
        self._rng = rng
        self.policy = policy
        self.stable_seconds = stable_seconds
        self.interval = interval
        self.states = {name: RestartState() for name in self.processes}
        self._closed = False

    def check(self, now: float | None = None) -> list[str]:
        """Notice exits, schedule their restarts, start those that are due; the names started."""
        now = time.monotonic() if now is None else now
        started: list[str] = []
        for name, process in self.processes.items():
            state = self.states[name]
            if self._closed or process.proc is None:
                continue
            if process.alive:
                if state.up_since is None:
                    state.up_since = now
                elif now - state.up_since >= self.stable_seconds:
                    state.backoff_step = 0
                continue
            if state.restart_at is None:
                state.last_exit = process.returncode
                state.backoff_step += 1
                state.restart_at = now + backoff_delay(state.backoff_step, self.policy, self._rng)
                state.up_since = None
            if now >= state.restart_at:
                process.start()
                state.restarts += 1
                state.restart_at = None
                state.up_since = now
                started.append(name)
        return started

    async def run(self) -> None:
        """Check every ``interval`` seconds until cancelled."""
        while True:
            self.check()
            await asyncio.sleep(self.interval)

    def close(self) -> None:
        """Restart nothing from now on (called before the processes are stopped)."""
        self._closed = True


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
