"""Transient errors are retried with full-jitter backoff within an attempt cap and a deadline."""

from __future__ import annotations

import random

import pytest

from dingdee_common.errors import PermanentError, TransientError
from dingdee_common.retry import (
    RetryExhaustedError,
    backoff_delay,
    retry_transient,
    retry_until_ok,
)
from dingdee_common.settings import RetrySettings

FAST = RetrySettings(
    initial_backoff_seconds=0.001, max_backoff_seconds=0.002, max_attempts=4, deadline_seconds=5
)


class TestBackoff:
    def test_delay_is_bounded_by_the_exponential_cap(self) -> None:
        policy = RetrySettings(initial_backoff_seconds=0.5, max_backoff_seconds=4.0)
        rng = random.Random(1)
        for attempt, cap in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)]:
            delays = [backoff_delay(attempt, policy, rng) for _ in range(200)]
            assert min(delays) >= 0 and max(delays) <= cap
            assert max(delays) > cap * 0.8, "full jitter should span the whole range"


class TestRetryTransient:
    async def test_succeeds_after_transient_failures(self) -> None:
        calls = 0

        async def flaky() -> str:
            nonlocal calls
            calls += 1
            if calls < 3:
                raise TransientError("HTTP 503")
            return "ok"

        assert await retry_transient(flaky, FAST) == "ok"
        assert calls == 3

    async def test_gives_up_at_the_attempt_cap(self) -> None:
        calls = 0

        async def always() -> None:
            nonlocal calls
            calls += 1
            raise TransientError("HTTP 502", code="http_502")

        with pytest.raises(RetryExhaustedError) as info:
            await retry_transient(always, FAST)
        assert calls == FAST.max_attempts
        assert info.value.attempts == FAST.max_attempts
        assert info.value.error_type == "http_502"

    async def test_honours_retry_after_against_the_deadline(self) -> None:
        policy = RetrySettings(initial_backoff_seconds=0.001, max_attempts=10, deadline_seconds=0.5)

        async def throttled() -> None:
            raise TransientError("90018", retry_after=1.0)

        with pytest.raises(RetryExhaustedError) as info:
            await retry_transient(throttled, policy)
        assert info.value.attempts == 1, "a 1 s retry_after cannot fit a 0.5 s deadline"

    async def test_permanent_errors_are_not_retried(self) -> None:
        calls = 0

        async def bad() -> None:
            nonlocal calls
            calls += 1
            raise PermanentError("rejected")

        with pytest.raises(PermanentError):
            await retry_transient(bad, FAST)
        assert calls == 1


class TestRetryUntilOk:
    async def test_outlives_the_attempt_cap_and_the_deadline(self) -> None:
        """Back-pressure has no budget: 3× the attempt cap, past the deadline, then success."""
        policy = RetrySettings(
            initial_backoff_seconds=0.001,
            max_backoff_seconds=0.002,
            max_attempts=4,
            deadline_seconds=0.01,
        )
        calls = 0
        seen: list[tuple[int, float]] = []

        async def down_for_a_while() -> str:
            nonlocal calls
            calls += 1
            if calls <= 12:
                raise TransientError("HTTP 503")
            return "up"

        result = await retry_until_ok(
            down_for_a_while, policy, on_retry=lambda _, n, delay: seen.append((n, delay))
        )
        assert result == "up" and calls == 13
        assert [n for n, _ in seen] == list(range(1, 13))
        assert all(0 <= delay <= policy.max_backoff_seconds for _, delay in seen)

    async def test_other_errors_pass_through(self) -> None:
        async def rejected() -> None:
            raise PermanentError("row rejected")

        with pytest.raises(PermanentError):
            await retry_until_ok(rejected, FAST)


def test_backoff_stays_at_the_cap_for_any_attempt() -> None:
    """An outage of days means attempt numbers in the thousands: no float overflow."""
    policy = RetrySettings(initial_backoff_seconds=0.5, max_backoff_seconds=30.0)
    assert 0 <= backoff_delay(100_000, policy) <= 30.0
