"""Rate limits: one token bucket per (app, API path), so no DingTalk per-API QPS limit is hit.

DingTalk limits each internal app **per API**: 20 QPS per app and API on the standard edition
(``contracts/dingtalk.md`` §5.1), answered ``90018`` (``QpsLimitForAppkeyAndApi``) in the second
after. So every endpoint path gets its own bucket at the limit less a safety margin: a burst of
``listids`` never delays the ``get`` an event is waiting for, and a new endpoint (contacts, …)
is limited as soon as it is called through :meth:`RateLimits.acquire` with its path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["RateLimits", "TokenBucket"]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class TokenBucket:
    """Allows ``rate`` acquisitions a second with bursts up to ``burst``.

    Acquirers queue fairly behind one lock; the waiting time is returned so callers can
    report rate-limit waits. ``clock`` and ``sleep`` are injectable (tests use a fake clock).
    """

    def __init__(
        self,
        rate: float,
        burst: float = 1.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._tokens = self.burst
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    async def acquire(self) -> float:
        """Take one token, sleeping until one is available; return the seconds waited."""
        started = self._clock()  # the wait behind other acquirers counts too
        async with self._lock:
            self._refill()
            while self._tokens < 1.0:
                # at least a microsecond: a rounding-sized shortfall must still move the clock
                await self._sleep(max((1.0 - self._tokens) / self.rate, 1e-6))
                self._refill()
            self._tokens -= 1.0
            return self._clock() - started

    def penalise(self, seconds: float) -> None:
        """Drain the bucket for ``seconds`` (after DingTalk said we were too fast)."""
        self._refill()
        self._tokens = min(self._tokens, 0.0) - seconds * self.rate


class RateLimits:
    """The buckets of one client: one per (app, API path), each at ``limit × (1 − margin)``.

    ``limit`` is DingTalk's per-app, per-API QPS (20 on the standard edition, §5.1); the margin
    keeps the calls' arrival jitter from crossing it (a ``90018`` costs the whole next second).
    """

    def __init__(
        self,
        limit: float,
        margin: float = 0.05,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if limit <= 0 or not 0 <= margin < 1:
            raise ValueError(f"limit must be > 0 and 0 <= margin < 1, got {limit}, {margin}")
        self.rate = limit * (1 - margin)
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    def bucket(self, app: str, path: str) -> TokenBucket:
        """The bucket of ``app``'s calls to ``path`` (created on first use)."""
        key = (app, path)
        if key not in self._buckets:
            self._buckets[key] = TokenBucket(self.rate, clock=self._clock, sleep=self._sleep)
        return self._buckets[key]

    async def acquire(self, app: str, path: str) -> float:
        """Wait for a call of ``app`` to ``path``; returns the seconds waited."""
        return await self.bucket(app, path).acquire()

    def penalise(self, app: str, path: str, seconds: float) -> None:
        """DingTalk answered ``90018``/``90019`` for this (app, API): hold it for ``seconds``."""
        self.bucket(app, path).penalise(seconds)
