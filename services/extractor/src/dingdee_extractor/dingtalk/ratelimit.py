"""Token buckets: one per (app, API), so no DingTalk per-app QPS limit is ever hit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    """Allows ``rate`` acquisitions a second with bursts up to ``burst``.

    Acquirers queue fairly behind one lock; the waiting time is returned so callers can
    report rate-limit waits.
    """

    def __init__(
        self, rate: float, burst: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._tokens = self.burst
        self._clock = clock
        self._updated = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    async def acquire(self) -> float:
        """Take one token, sleeping until one is available; return the seconds waited."""
        async with self._lock:
            waited = 0.0
            self._refill()
            while self._tokens < 1.0:
                delay = (1.0 - self._tokens) / self.rate
                await asyncio.sleep(delay)
                waited += delay
                self._refill()
            self._tokens -= 1.0
            return waited

    def penalise(self, seconds: float) -> None:
        """Drain the bucket for ``seconds`` (after DingTalk said we were too fast)."""
        self._refill()
        self._tokens = min(self._tokens, 0.0) - seconds * self.rate
