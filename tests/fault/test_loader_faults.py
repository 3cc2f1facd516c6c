"""The loader under a fault storm, then under SIGKILLs: Kingdee still ends with each bill once.

10,000 petty-cash bills, ~5 % rejected by Kingdee for their data; the sandbox answers 2 % of calls
with HTTP 503, drops the connection after committing 1 % of BatchSaves, answers 0.5 % of calls after
the client's timeout, and every session is revoked midway. The loader runs as its own process
against the real broker; the second test SIGKILLs and restarts it at random moments.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dingdee_common.settings import KafkaSettings
from dingdee_dev.procs import ManagedProcess, wait_http_ok
from dingdee_sandbox.kingdee import SandboxConfig
from tests.helpers import poll_until
from tests.integration.test_loader_service import (
    BillSet,
    Sandbox,
    committed_to_end,
    dead_letters,
    loader_process,
    make_bills,
    produce,
    results_by_key,
    start_sandbox,
)

pytestmark = [pytest.mark.fault, pytest.mark.slow]

BILLS = 10_000
STORM = SandboxConfig(
    latency_call_seconds=0.01,
    latency_package_seconds=0.0004,
    http_5xx_rate=0.02,
    commit_then_drop_rate=0.01,
    drop_keep_fraction=0.5,  # half the packages committed, then the connection dropped
    slow_rate=0.005,
    slow_seconds=2.5,
    seed=5,
)
LOADER_ENV = {
    "DINGDEE_KINGDEE__TIMEOUT_SECONDS": "1.5",
    "DINGDEE_KINGDEE__CONCURRENCY": "4",
    "DINGDEE_BATCH_MAX_RECORDS": "100",
    "DINGDEE_BATCH_LINGER_SECONDS": "0.05",
    "DINGDEE_RETRY__INITIAL_BACKOFF_SECONDS": "0.05",
    "DINGDEE_RETRY__MAX_BACKOFF_SECONDS": "1",
    "DINGDEE_RETRY__MAX_ATTEMPTS": "15",
    "DINGDEE_RETRY__DEADLINE_SECONDS": "90",
    "DINGDEE_SESSION_TIMEOUT_MS": "6000",
    "DINGDEE_TELEMETRY__LOG_LEVEL": "INFO",  # batch outcomes in loader.log when a run fails
}


@pytest.fixture
async def storm_sandbox() -> AsyncIterator[Sandbox]:
    box, runner = await start_sandbox(STORM.model_copy())
    # one of each fault for sure, whatever the rates draw
    box.state.fault_queue.extend(["commit_then_drop", "http_503", "slow", "commit_then_drop"])
    yield box
    await runner.cleanup()


async def revoke_midway(box: Sandbox, bills: BillSet) -> None:
    """Revoke every Kingdee session once half of the valid bills are saved."""
    await poll_until(
        lambda: len(box.numbers()) >= len(bills.valid) // 2, timeout=90, what="half the bills"
    )
    assert box.state.revoke_sessions() > 0


async def wait_done(
    kafka: KafkaSettings, box: Sandbox, bills: BillSet, group: str, last: dict[int, int]
) -> None:
    await poll_until(
        lambda: len(box.numbers()) >= len(bills.valid), timeout=150, what="every valid bill saved"
    )
    await poll_until(
        lambda: committed_to_end(kafka, group, last), timeout=60, what="offsets committed to end"
    )


async def assert_outcome(
    kafka: KafkaSettings, box: Sandbox, bills: BillSet, *, exactly_once_topics: bool
) -> None:
    numbers = box.numbers()
    assert len(numbers) == len(set(numbers)), "a bill was created twice in Kingdee"
    assert set(numbers) == bills.valid
    dlq = await dead_letters(kafka)
    assert set(dlq) == bills.invalid
    assert all(h["dlq-error-type"] == "kingdee_row_rejected" for v in dlq.values() for h in v)
    results = await results_by_key(kafka)
    assert set(results) == bills.all
    for key in bills.valid:
        assert results[key][-1].outcome.value in ("saved", "already_exists"), results[key]
    for key in bills.invalid:
        assert results[key][-1].outcome.value == "failed", [r.model_dump() for r in results[key]]
    if exactly_once_topics:
        assert all(len(v) == 1 for v in results.values()), "a bill has two results"
        assert all(len(v) == 1 for v in dlq.values()), "a bill was dead-lettered twice"
    duplicates = sum(len(v) - 1 for v in dlq.values()) + sum(len(v) - 1 for v in results.values())
    print(f"re-published after restarts: {duplicates} (dead letters + results)")
    stats = box.state.stats
    assert stats["fault_http_5xx"] > 0 and stats["fault_commit_then_drop"] > 0
    assert stats["sessions_revoked"] > 0 and stats["session_lost"] > 0
    assert stats["calls_executebillquery"] > 0, "unknown outcomes must be checked before re-send"


async def test_fault_storm_each_valid_bill_once(
    kafka: KafkaSettings, storm_sandbox: Sandbox, group_id: str, tmp_path: Path
) -> None:
    """5xx, commit-then-drop, slow answers, sessions revoked: exact sets, one outcome each."""
    bills = make_bills(BILLS, 0.05, seed=21)
    last = await produce(kafka, bills.records)
    proc, port = loader_process(
        kafka, storm_sandbox.url, group_id, tmp_path / "loader.log", **LOADER_ENV
    )
    proc.start()
    try:
        await wait_http_ok(f"http://127.0.0.1:{port}/healthz", timeout=30, process=proc)
        await revoke_midway(storm_sandbox, bills)
        await wait_done(kafka, storm_sandbox, bills, group_id, last)
    finally:
        assert proc.stop() == 0, proc.tail()
    await assert_outcome(kafka, storm_sandbox, bills, exactly_once_topics=True)


async def kill_at(
    proc: ManagedProcess, port: int, box: Sandbox, bills: BillSet, share: float
) -> None:
    """SIGKILL the loader once ``share`` of the valid bills are saved (plus a random delay)."""
    target = int(len(bills.valid) * share)
    await poll_until(lambda: len(box.numbers()) >= target, timeout=120, what=f"{share:.0%} saved")
    await asyncio.sleep(random.uniform(0, 0.3))
    proc.kill()
    proc.start()
    await wait_http_ok(f"http://127.0.0.1:{port}/healthz", timeout=30, process=proc)


async def test_sigkilled_three_times_each_valid_bill_once(
    kafka: KafkaSettings, group_id: str, tmp_path: Path
) -> None:
    """The same storm with the loader SIGKILLed and restarted 3 times: same exact outcome."""
    box, runner = await start_sandbox(STORM.model_copy(update={"latency_package_seconds": 0.003}))
    box.state.fault_queue.extend(["commit_then_drop", "http_503", "commit_then_drop"])
    bills = make_bills(BILLS, 0.05, seed=22)
    last = await produce(kafka, bills.records)
    proc, port = loader_process(kafka, box.url, group_id, tmp_path / "loader.log", **LOADER_ENV)
    proc.start()
    try:
        await wait_http_ok(f"http://127.0.0.1:{port}/healthz", timeout=30, process=proc)
        await kill_at(proc, port, box, bills, 0.1)
        await kill_at(proc, port, box, bills, 0.3)
        await revoke_midway(box, bills)
        await kill_at(proc, port, box, bills, 0.7)
        assert len(box.numbers()) < len(bills.valid), "the kills came too late"
        await wait_done(kafka, box, bills, group_id, last)
        assert proc.stop() == 0, proc.tail()
        assert proc.starts == 4
        await assert_outcome(kafka, box, bills, exactly_once_topics=False)
    finally:
        proc.stop()
        await runner.cleanup()
