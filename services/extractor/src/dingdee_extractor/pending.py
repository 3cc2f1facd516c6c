"""How long the oldest follow-up has been waiting (issue #18, DESIGN §11).

The follow-up consumer hands each fetched batch to :class:`PendingFollowups` and says which
record it takes up next; the oldest record of the batch not yet handled is *pending*, aged from
its record time (when the loader wrote the result, or the operator replayed the request): how
long the applicant has been waiting for the comment or the bill for its files. While DingTalk is
down or throttling, the consumer waits on one record with backoff, so that age grows.

:meth:`PendingFollowups.watch` samples it every ``check_interval_seconds``:
``dingdee_followups_oldest_pending_seconds`` shows it, and over ``stuck_seconds`` the
extractor's ``/readyz`` says so with the reason (back-pressure, never a dead letter; alert
``DingdeeFollowupsStuck``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import Gauge

from dingdee_extractor.settings import FollowupSettings

__all__ = ["PendingFollowups"]

SUBJECT = "follow-ups"


class PendingFollowups:
    """The oldest unhandled record of the batch in hand (see the module docstring)."""

    def __init__(
        self,
        settings: FollowupSettings,
        gauge: Gauge,
        behind: Callable[[str, str | None], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._s = settings
        self._gauge = gauge
        self._behind = behind
        self._clock = clock
        self._since: list[float] = []  # per record of the batch: the oldest time from there on
        self._what: list[str] = []
        self._at = -1

    def batch(self, records: Sequence[tuple[str, Any]]) -> None:
        """A fetched batch, in handling order: ``(topic, record)`` pairs."""
        now = self._clock()
        times = [_seconds(r, now) for _, r in records]
        self._since = [min(times[i:]) for i in range(len(times))]
        self._what = [f"{topic} offset {r.offset}" for topic, r in records]
        self._at = 0 if records else -1

    def taking(self, index: int) -> None:
        """The consumer takes up record ``index`` of the batch."""
        self._at = index

    def done(self) -> None:
        """The batch is handled (or the consumer stops)."""
        self._since, self._what, self._at = [], [], -1
        self.check()

    def age(self) -> float:
        """Seconds the oldest pending follow-up has waited; 0 when none is pending."""
        if not 0 <= self._at < len(self._since):
            return 0.0
        return max(0.0, self._clock() - self._since[self._at])

    def check(self) -> float:
        """Update the gauge and ``/readyz``; returns the age."""
        age = self.age()
        self._gauge.set(round(age, 3))
        if age <= self._s.stuck_seconds:
            self._behind(SUBJECT, None)
            return age
        self._behind(
            SUBJECT,
            f"follow-ups behind: the oldest pending one ({self._what[self._at]}) has waited "
            f"{age:.0f}s, over DINGDEE_FOLLOWUPS__STUCK_SECONDS={self._s.stuck_seconds:g}; "
            "DingTalk (or the broker) is not taking write-backs or download-URL calls: "
            "waiting with backoff, nothing is dead-lettered",
        )
        return age

    async def watch(self, stop: asyncio.Event) -> None:
        """Check every ``check_interval_seconds`` until ``stop``."""
        while not stop.is_set():
            self.check()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._s.check_interval_seconds)
        self._behind(SUBJECT, None)


def _seconds(record: Any, now: float) -> float:
    """The record's time in seconds (its Kafka timestamp; ``now`` when it has none)."""
    stamp = getattr(record, "timestamp", None)
    return stamp / 1000.0 if isinstance(stamp, int) and stamp > 0 else now
