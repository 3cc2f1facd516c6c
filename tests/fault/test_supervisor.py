"""The dev stack's supervisor on real processes: a SIGKILLed or exiting one is started again,
counted, after a backoff that grows with consecutive restarts up to its cap."""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dingdee_common.settings import RetrySettings
from dingdee_dev.procs import ManagedProcess, Supervisor
from tests.helpers import poll_until

pytestmark = pytest.mark.fault

FAST = RetrySettings(initial_backoff_seconds=0.05, max_backoff_seconds=0.2)


def _sleeper(tmp_path: Path, name: str) -> ManagedProcess:
    return ManagedProcess(
        name, [sys.executable, "-c", "import time; time.sleep(60)"], log_path=tmp_path / name
    )


@pytest.fixture
def sleepers(tmp_path: Path) -> Iterator[dict[str, ManagedProcess]]:
    procs = {name: _sleeper(tmp_path, name) for name in ("a", "b")}
    for proc in procs.values():
        proc.start()
    yield procs
    for proc in procs.values():
        proc.stop(timeout=2)


async def test_a_sigkilled_process_is_restarted_and_counted(
    sleepers: dict[str, ManagedProcess],
) -> None:
    supervisor = Supervisor(sleepers, FAST, interval=0.02)
    supervising = asyncio.create_task(supervisor.run())
    victim = sleepers["a"]
    first_pid = victim.pid
    try:
        victim.kill()
        await poll_until(
            lambda: supervisor.states["a"].restarts == 1, timeout=5, what="a restarted"
        )
    finally:
        supervising.cancel()
    state = supervisor.states["a"]
    assert victim.alive and victim.pid != first_pid
    assert state.last_exit == -9
    assert state.describe(0) == "running"
    assert supervisor.states["b"].restarts == 0, "the other process was left alone"


class _Longest(random.Random):
    """Full jitter at its upper bound: the backoff's cap itself."""

    def uniform(self, a: float, b: float) -> float:
        return b


async def test_backoff_grows_with_consecutive_restarts_up_to_the_cap(tmp_path: Path) -> None:
    crasher = ManagedProcess("c", [sys.executable, "-c", "raise SystemExit(3)"])
    policy = RetrySettings(initial_backoff_seconds=10.0, max_backoff_seconds=25.0)
    supervisor = Supervisor({"c": crasher}, policy, stable_seconds=1000.0, rng=_Longest())
    crasher.start()
    crasher.proc.wait()  # type: ignore[union-attr]
    delays = []
    now = 0.0
    for _ in range(4):
        supervisor.check(now)  # notices the exit, schedules the restart
        state = supervisor.states["c"]
        assert state.restart_at is not None and state.last_exit == 3
        assert "exited 3, restart in" in state.describe(now)
        delays.append(state.restart_at - now)
        now = state.restart_at
        assert supervisor.check(now) == ["c"]
        crasher.proc.wait()  # type: ignore[union-attr]
    assert delays == [10.0, 20.0, 25.0, 25.0]  # initial × 2^(n-1), capped (before jitter)
    assert supervisor.states["c"].restarts == 4


async def test_a_process_that_stays_up_starts_its_backoff_again(tmp_path: Path) -> None:
    proc = _sleeper(tmp_path, "s")
    supervisor = Supervisor({"s": proc}, FAST, stable_seconds=5.0)
    proc.start()
    try:
        supervisor.check(0.0)
        proc.kill()
        supervisor.check(1.0)
        supervisor.check(2.0)  # restarted (the delay is at most 0.05 s)
        assert supervisor.states["s"].backoff_step == 1
        supervisor.check(8.0)  # up for 6 s ≥ stable_seconds
        assert supervisor.states["s"].backoff_step == 0
    finally:
        proc.stop(timeout=2)


async def test_nothing_is_restarted_after_close(sleepers: dict[str, ManagedProcess]) -> None:
    supervisor = Supervisor(sleepers, FAST)
    supervisor.close()
    sleepers["a"].kill()
    supervisor.check(1e9)
    assert not sleepers["a"].alive
    assert supervisor.states["a"].restarts == 0
