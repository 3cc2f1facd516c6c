"""Kingdee outages are back-pressure: the loader pauses, waits, resumes, and nothing is lost.

Each case runs its own Kingdee sandbox process, topic prefix, consumer group and loader process,
so the cases can run in parallel. Bills flow when the outage starts (mid-batch); during it the
loader must say so (``/readyz`` 503 naming Kingdee, ``dingdee_kingdee_up`` 0) and stay alive; after
it, Kingdee holds exactly the bills sent, each once, ``dlq.loader`` is empty, every bill has a
final ``saved`` / ``already_exists`` result, and the offsets are committed to the end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from dingdee_common.settings import KafkaSettings
from dingdee_dev.procs import wait_http_ok
from tests.fault.kingdee_outage import LOADER_ENV, LoaderProbe, SandboxProcess
from tests.helpers import poll_until
from tests.integration.test_loader_service import (
    BillSet,
    committed_to_end,
    dead_letters,
    loader_process,
    make_bills,
    produce,
    results_by_key,
)

pytestmark = [pytest.mark.fault, pytest.mark.slow]

BILLS = 600
# ~0.45 s per 20-bill BatchSave: the 600 bills take a few seconds, so the outage starts mid-run
LATENCY = ("--latency-call-seconds", "0.05", "--latency-package-seconds", "0.02")


@pytest.fixture
async def kingdee(tmp_path: Path) -> AsyncIterator[SandboxProcess]:
    box = SandboxProcess(tmp_path, *LATENCY, "--seed", "7")
    await box.start()
    yield box
    box.stop()


class Run:
    """One loader against one sandbox, with the bills it must end with."""

    def __init__(
        self, kafka: KafkaSettings, box: SandboxProcess, group: str, tmp_path: Path
    ) -> None:
        self.kafka, self.box, self.group = kafka, box, group
        self.bills: BillSet = make_bills(BILLS, 0.0, seed=61)
        self.proc, port = loader_process(
            kafka, box.url, group, tmp_path / "loader.log", **LOADER_ENV
        )
        self.ops = LoaderProbe(port)
        self.last: dict[int, int] = {}

    async def start(self) -> None:
        self.last = await produce(self.kafka, self.bills.records)
        await self.restart()

    async def restart(self) -> None:
        self.proc.start()
        await wait_http_ok(f"{self.ops.base}/healthz", timeout=30, process=self.proc)

    async def saved_at_least(self, count: int) -> None:
        async def enough() -> bool:
            return len(await self.box.numbers()) >= count

        await poll_until(enough, timeout=60, what=f"{count} bills saved before the outage")

    async def wait_paused(self) -> None:
        await poll_until(self.ops.paused, timeout=60, what="/readyz and dingdee_kingdee_up = 0")

    async def hold_outage(self, seconds: float, *, frozen: bool = False) -> None:
        """Stay in the outage ``seconds``, checking the loader stays up, paused and DLQ-free."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            assert self.proc.alive, self.proc.tail()
            assert await self.ops.paused(), await self.ops.readyz()
            await asyncio.sleep(min(5.0, max(end - loop.time(), 0.0)))
        assert await dead_letters(self.kafka) == {}, "an outage dead-lettered bills"
        if not frozen:
            assert len(await self.box.numbers()) < len(self.bills.valid), "nothing was held"

    async def assert_exact_after_recovery(self) -> None:
        async def all_saved() -> bool:
            return len(set(await self.box.numbers())) >= len(self.bills.valid)

        await poll_until(all_saved, timeout=120, what="every bill in Kingdee after the outage")
        await poll_until(
            lambda: committed_to_end(self.kafka, self.group, self.last),
            timeout=60,
            what="offsets committed to the end",
        )
        await poll_until(self.ops.resumed, timeout=30, what="/readyz 200, dingdee_kingdee_up 1")
        assert self.proc.alive, self.proc.tail()
        numbers = await self.box.numbers()
        assert len(numbers) == len(set(numbers)), "a bill was created twice in Kingdee"
        assert set(numbers) == self.bills.valid
        assert await dead_letters(self.kafka) == {}
        results = await results_by_key(self.kafka)
        assert set(results) == self.bills.valid
        finals = {key: rs[-1].outcome.value for key, rs in results.items()}
        assert set(finals.values()) <= {"saved", "already_exists"}, finals

    def stop(self) -> None:
        code = self.proc.stop()
        assert code in (0, None), self.proc.tail()


@pytest.fixture
async def run(
    kafka: KafkaSettings, kingdee: SandboxProcess, group_id: str, tmp_path: Path
) -> AsyncIterator[Run]:
    r = Run(kafka, kingdee, group_id, tmp_path)
    try:
        yield r
    finally:
        kingdee.thaw()
        r.stop()


async def ride_out(
    run: Run,
    begin: Callable[[], Awaitable[None]],
    end: Callable[[], Awaitable[None]],
    seconds: float,
    *,
    frozen: bool = False,
) -> None:
    await run.start()
    await run.saved_at_least(60)
    await begin()
    await run.wait_paused()
    await run.hold_outage(seconds, frozen=frozen)
    await end()
    await run.assert_exact_after_recovery()


async def test_kingdee_503_for_two_minutes(run: Run, kingdee: SandboxProcess) -> None:
    """Every call HTTP 503 for 120 s (an IIS recycle, an upgrade)."""
    await ride_out(
        run,
        lambda: kingdee.configure(http_5xx_rate=1.0),
        lambda: kingdee.configure(http_5xx_rate=0.0),
        120,
    )
    assert (await kingdee.stats())["fault_http_5xx"] > 0


async def test_kingdee_frozen_for_a_minute_mid_batch(run: Run, kingdee: SandboxProcess) -> None:
    """SIGSTOP for 60 s: calls in flight time out, some commit after SIGCONT: still once each."""

    async def freeze() -> None:
        kingdee.freeze()

    async def thaw() -> None:
        kingdee.thaw()

    await ride_out(run, freeze, thaw, 60, frozen=True)
    assert (await kingdee.stats())["calls_executebillquery"] > 0, "no existence check after"


async def test_kingdee_busy_for_a_minute(run: Run, kingdee: SandboxProcess) -> None:
    """Every call a ``response_error:`` "服务繁忙" server exception for 60 s (contract §0.4)."""
    await ride_out(
        run,
        lambda: kingdee.configure(response_error_rate=1.0, response_error_message="服务繁忙"),
        lambda: kingdee.configure(response_error_rate=0.0),
        60,
    )
    assert (await kingdee.stats())["fault_response_error"] > 0


async def test_loader_sigkilled_while_paused(run: Run, kingdee: SandboxProcess) -> None:
    """SIGKILL during a 503 outage, restart while it lasts: the new process pauses too, then the
    exact set (bills the first process held are checked in Kingdee before they are sent)."""

    async def kill_and_restart() -> None:
        await kingdee.configure(http_5xx_rate=1.0)
        await run.wait_paused()
        run.proc.kill()
        await run.restart()

    await ride_out(run, kill_and_restart, lambda: kingdee.configure(http_5xx_rate=0.0), 20)
    assert run.proc.starts == 2
