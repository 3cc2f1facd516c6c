"""Exponential backoff with full jitter, bounded by both an attempt cap and a deadline."""

from __future__ import annotations

import asyncio
import math
import random
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from dingdee_common.errors import RetryExhaustedError, TransientError
from dingdee_common.settings import RetrySettings

__all__ = ["RetryExhaustedError", "backoff_delay", "retry_transient", "retry_until_ok"]

T = TypeVar("T")


def backoff_delay(attempt: int, policy: RetrySettings, rng: random.Random | None = None) -> float:
    """Full-jitter delay before retry number ``attempt`` (1-based)."""
    # past 2**60 the cap has long been reached; a larger power would overflow the float
    doubled = policy.initial_backoff_seconds * (2 ** (min(attempt, 61) - 1))
    cap = min(policy.max_backoff_seconds, doubled)
    return (rng or random).uniform(0, cap)


async def retry_transient(
    call: Callable[[], Awaitable[T]],
    policy: RetrySettings,
    *,
    on_retry: Callable[[TransientError, int, float], None] | None = None,
) -> T:
    """Run ``call``; retry it on :class:`TransientError` until the budget is spent.

    Raises:
        RetryExhaustedError: the attempt cap or the deadline was reached.
        Any non-transient exception from ``call`` unchanged.
    """
    deadline = time.monotonic() + policy.deadline_seconds
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call()
        except TransientError as exc:
            delay = backoff_delay(attempt, policy)
            if exc.retry_after is not None:
                delay = max(delay, exc.retry_after)
            if attempt >= policy.max_attempts or time.monotonic() + delay > deadline:
                raise RetryExhaustedError(exc, attempt) from exc
            if on_retry is not None:
                on_retry(exc, attempt, delay)
            await asyncio.sleep(delay)


async def retry_until_ok(
    call: Callable[[], Awaitable[T]],
    policy: RetrySettings,
    *,
    on_retry: Callable[[TransientError, int, float], None] | None = None,
) -> T:
    """Run ``call`` until it succeeds: back-pressure has no budget (Kafka Connect's
    ``errors.retry.timeout=-1``).

    ``retry_transient`` with the policy's backoff but neither its attempt cap nor its deadline.

    Raises:
        Any non-transient exception from ``call`` unchanged.
    """
    unbounded = policy.model_copy(
        update={"max_attempts": sys.maxsize, "deadline_seconds": math.inf}
    )
    return await retry_transient(call, unbounded, on_retry=on_retry)
