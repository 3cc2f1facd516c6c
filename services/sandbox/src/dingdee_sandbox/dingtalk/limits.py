"""Call limits: per-(app, API) and global QPS in sliding seconds, and the monthly quota.

QPS windows run on the real monotonic clock (pacing is real time); the ``90002`` penalty end
and the quota month follow the sandbox clock, so tests can step over them.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

__all__ = ["Limiter"]


def _prune(window: deque[float], now: float) -> None:
    while window and now - window[0] >= 1.0:
        window.popleft()


@dataclass
class Limiter:
    """Mutable counters behind the limits; one per sandbox state."""

    windows: dict[tuple[str, str], deque[float]] = field(default_factory=dict)
    global_windows: dict[str, deque[float]] = field(default_factory=dict)
    penalty_until_ms: dict[str, int] = field(default_factory=dict)
    month: str = ""
    metered_calls: int = 0

    def over_app_qps(self, app_key: str, api: str, qps: int, *, count_rejected: bool) -> bool:
        """True when this call exceeds ``qps`` for (app, API) in the last second.

        Accepted calls always fill the window; rejected ones only with ``count_rejected``.
        """
        window = self.windows.setdefault((app_key, api), deque())
        now = time.monotonic()
        _prune(window, now)
        over = len(window) >= qps
        if not over or count_rejected:
            window.append(now)
        return over

    def over_global_qps(self, api: str, limit: int | None, now_ms: int, penalty_ms: int) -> bool:
        """True while ``api`` is globally limited: over ``limit`` per second, then a penalty."""
        if self.penalty_until_ms.get(api, 0) > now_ms:
            return True
        if limit is None:
            return False
        window = self.global_windows.setdefault(api, deque())
        now = time.monotonic()
        _prune(window, now)
        if len(window) >= limit:
            self.penalty_until_ms[api] = now_ms + penalty_ms
            return True
        window.append(now)
        return False

    def penalise(self, api: str, now_ms: int, penalty_ms: int) -> int:
        """Start (or extend) a global limit on ``api``; returns when it ends (sandbox ms)."""
        end = max(self.penalty_until_ms.get(api, 0), now_ms + penalty_ms)
        self.penalty_until_ms[api] = end
        return end

    def meter(self, month: str, quota: int | None) -> bool:
        """Count one metered call in ``month``; False (not counted) once ``quota`` is used up."""
        if month != self.month:
            self.month, self.metered_calls = month, 0
        if quota is not None and self.metered_calls >= quota:
            return False
        self.metered_calls += 1
        return True
