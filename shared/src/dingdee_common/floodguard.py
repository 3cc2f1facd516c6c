"""Flood guard (DESIGN §4): a bad deploy must not dead-letter everything."""

from __future__ import annotations

from collections import deque

from dingdee_common.settings import FloodGuardSettings

__all__ = ["FloodGuard"]


class FloodGuard:
    """Tracks recent outcomes; trips when dead letters dominate a window or run consecutively.

    Once tripped it stays tripped: the stage stops consuming and turns not-ready until an operator
    restarts it (after fixing the deploy or the data), so nothing more drains into the DLQ.
    """

    def __init__(self, settings: FloodGuardSettings) -> None:
        self._settings = settings
        self._window: deque[bool] = deque(maxlen=settings.window)
        self._dead = 0
        self._consecutive = 0
        self.tripped_reason: str | None = None

    @property
    def tripped(self) -> bool:
        return self.tripped_reason is not None

    def record(self, dead_lettered: bool) -> bool:
        """Record one outcome; return True when this outcome trips the guard."""
        if len(self._window) == self._window.maxlen and self._window[0]:
            self._dead -= 1
        self._window.append(dead_lettered)
        self._dead += int(dead_lettered)
        self._consecutive = self._consecutive + 1 if dead_lettered else 0
        if not self._settings.enabled or self.tripped:
            return False
        s = self._settings
        if self._consecutive >= s.max_consecutive:
            self.tripped_reason = f"{self._consecutive} consecutive records dead-lettered"
        elif (
            len(self._window) >= s.min_records
            and self._dead / len(self._window) > s.max_dead_letter_ratio
        ):
            self.tripped_reason = (
                f"{self._dead} of the last {len(self._window)} records dead-lettered "
                f"(limit {s.max_dead_letter_ratio:.0%})"
            )
        return self.tripped
