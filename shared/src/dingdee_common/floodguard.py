"""Flood guard (DESIGN §4): a bad deploy or bad data must not dead-letter everything.

It judges the *records*, not the systems around them: its window holds only outcomes that say
something about a record's data (finished fine, or dead-lettered as ``permanent`` / ``poison``).
A destination that is down or failing is back-pressure (``BackpressureError``): the stage pauses
and waits, and nothing of it reaches the guard. ``exhausted`` dead letters (a record that kept
failing transiently) are not counted either, so an outage can never trip it.
"""

from __future__ import annotations

from collections import deque

from dingdee_common.errors import ErrorClass
from dingdee_common.settings import FloodGuardSettings

__all__ = ["FloodGuard"]

# dead-letter classes that say the record (or the code handling it) is wrong
_BAD_DATA = frozenset({ErrorClass.PERMANENT, ErrorClass.POISON})


class FloodGuard:
    """Tracks recent outcomes; trips when bad-data dead letters dominate a window or run in a row.

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

    def record(self, outcome: ErrorClass | bool | None) -> bool:
        """Record one outcome; return True when this outcome trips the guard.

        ``outcome`` is the dead-letter class, or None / False when the record finished fine.
        ``True`` means a dead letter for the record's data (callers whose dead letters are always
        permanent or poison). ``ErrorClass.EXHAUSTED`` is ignored: it is not evidence of bad data.
        """
        if outcome is ErrorClass.EXHAUSTED:
            return False
        dead_lettered = outcome is True or (
            isinstance(outcome, ErrorClass) and outcome in _BAD_DATA
        )
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
