"""Per-API token buckets on a fake clock: each (app, API path) at the limit less the margin."""

from __future__ import annotations

import asyncio

import pytest

from dingdee_extractor.dingtalk.ratelimit import RateLimits, TokenBucket


class FakeClock:
    """Virtual time: it moves only when every task sleeps, to the earliest wake-up."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._wakeups: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        target = self.now + max(seconds, 0.0)
        self._wakeups.append(target)
        try:
            while self.now < target:
                for _ in range(5):  # let every runnable task reach its own sleep first
                    await asyncio.sleep(0)
                if target <= min(self._wakeups):
                    self.now = target
        finally:
            self._wakeups.remove(target)


def most_in_a_second(stamps: list[float]) -> int:
    stamps = sorted(stamps)
    return max(sum(1 for t in stamps[i:] if t - s < 1.0 - 1e-9) for i, s in enumerate(stamps))


async def stamps_of(
    limits: RateLimits, clock: FakeClock, app: str, path: str, n: int
) -> list[float]:
    out = []
    for _ in range(n):
        await limits.acquire(app, path)
        out.append(clock.now)
    return out


class TestRateLimits:
    async def test_each_api_runs_at_the_limit_less_the_margin(self) -> None:
        clock = FakeClock()
        limits = RateLimits(20, 0.05, clock=clock, sleep=clock.sleep)
        assert limits.rate == pytest.approx(19.0)
        stamps = await stamps_of(limits, clock, "main", "/topapi/processinstance/get", 191)
        assert stamps[-1] - stamps[0] == pytest.approx(10.0)  # 190 intervals of 1/19 s
        assert most_in_a_second(stamps) == 19

    async def test_apis_and_apps_do_not_wait_for_each_other(self) -> None:
        clock = FakeClock()
        limits = RateLimits(20, 0.05, clock=clock, sleep=clock.sleep)
        keys = [("main", "/get"), ("main", "/listids"), ("other", "/get")]
        start = clock.now
        runs = await asyncio.gather(*(stamps_of(limits, clock, a, p, 39) for a, p in keys))
        # three streams of 39 calls share one clock: 2 s, not the 6 s one bucket would take
        assert clock.now - start == pytest.approx(2.0, abs=0.1)
        assert all(most_in_a_second(r) <= 20 for r in runs)
        assert limits.bucket("main", "/get") is limits.bucket("main", "/get")
        assert limits.bucket("main", "/get") is not limits.bucket("other", "/get")

    async def test_penalty_holds_only_its_api_for_the_next_second(self) -> None:
        clock = FakeClock()
        limits = RateLimits(20, 0.0, clock=clock, sleep=clock.sleep)
        await limits.acquire("main", "/get")
        limits.penalise("main", "/get", 1.0)
        assert await limits.acquire("main", "/listids") == 0.0
        assert await limits.acquire("main", "/get") == pytest.approx(1.05)

    def test_bad_settings_are_refused(self) -> None:
        with pytest.raises(ValueError, match="margin"):
            RateLimits(20, 1.0)


class TestTokenBucket:
    async def test_reported_wait_includes_the_queue(self) -> None:
        clock = FakeClock()
        bucket = TokenBucket(rate=10, clock=clock, sleep=clock.sleep)
        waits = await asyncio.gather(*(bucket.acquire() for _ in range(3)))
        assert sorted(waits) == pytest.approx([0.0, 0.1, 0.2])
