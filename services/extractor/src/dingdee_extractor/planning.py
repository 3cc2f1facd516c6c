"""A poll cycle's plan as pure functions: windows, the sweep's range, open-instance re-checks.

:class:`~dingdee_extractor.poller.FlowPoller` does the I/O; everything it decides about *which*
creation times to list and *when* to fetch an instance again is computed here from plain numbers
(milliseconds since the epoch), so it is unit-tested without DingTalk or a broker.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from dingdee_common.contracts import OpenInstance
from dingdee_extractor.settings import PollSettings

__all__ = [
    "DAY_MS",
    "CycleRange",
    "cycle_range",
    "due",
    "next_check_ms",
    "paced_ms",
    "settled_until",
    "split_windows",
    "sweep_range",
]

DAY_MS = 86_400_000


def split_windows(start_ms: int, end_ms: int, max_ms: int) -> Iterator[tuple[int, int]]:
    """``[start, end]`` cut into inclusive windows no wider than ``max_ms``."""
    lo = start_ms
    while lo <= end_ms:
        hi = min(end_ms, lo + max_ms - 1)
        yield lo, hi
        lo = hi + 1


@dataclass(frozen=True, slots=True)
class CycleRange:
    """Creation times one cycle lists: ``[start, end]``; ids created before ``fresh_from`` that
    nobody knew yet were listed late (counted as ``sweep``)."""

    start: int
    fresh_from: int
    end: int


def cycle_range(
    poll: PollSettings,
    *,
    now: int,
    watermark: int,
    flow_start: int,
    swept_until: int,
    until_ms: int | None = None,
) -> CycleRange:
    """From the watermark (less the overlap) to ``now - settle`` (or a backfill's ``until_ms``).

    Never older than the lookback DingTalk allows; the sweep rides along when that is cheap
    (:func:`ride_along`).
    """
    end = now - int(poll.settle_seconds * 1000)
    if until_ms is not None:
        end = min(end, until_ms)
    floor = max(flow_start, now - int(poll.lookback_max_days * DAY_MS) + 60_000)
    fresh_from = max(floor, watermark - int(poll.overlap_seconds * 1000))
    start = ride_along(fresh_from, end, swept_until, backfill=until_ms is not None)
    return CycleRange(start=start, fresh_from=fresh_from, end=end)


def ride_along(fresh_from: int, end: int, swept_until: int, *, backfill: bool = False) -> int:
    """Where a cycle's listing starts: the sweep rides along when that is cheap.

    When the creation times not yet re-listed since they settled end shortly before this
    cycle's window (at most the window's own length before it), the window simply starts
    there: one listing instead of a window and a sweep, and the sweep finds nothing left.
    """
    if not backfill and 0 < fresh_from - swept_until <= end - fresh_from:
        return swept_until
    return fresh_from


def settled_until(lo: int, hi: int, now: int, swept_until: int, sweep_delay_seconds: float) -> int:
    """The new ``swept_until`` after listing ``[lo, hi]``: creation times listed at least
    ``sweep_delay`` after they passed need no sweep (only a first window, or one contiguous with
    the swept part, moves it)."""
    if swept_until == 0 or lo <= swept_until:
        settled = min(hi + 1, now - int(sweep_delay_seconds * 1000))
        return max(swept_until, settled)
    return swept_until


def sweep_range(
    poll: PollSettings, *, now: int, watermark: int, flow_start: int, swept_until: int
) -> tuple[int, int]:
    """``[lo, hi]`` a compensation sweep re-lists: from the last sweep's end (never older than
    the sweep lookback) to ``now - sweep_delay``, and never past what the windows read."""
    lo = max(flow_start, now - int(poll.sweep_lookback_days * DAY_MS), swept_until)
    hi = min(now - int(poll.sweep_delay_seconds * 1000), watermark - 1)
    return lo, hi


def due(open_instances: Mapping[str, OpenInstance], now: int) -> list[str]:
    """Open instances whose re-check time has come."""
    return [i for i, o in open_instances.items() if o.next_check_ms <= now]


def paced_ms(poll: PollSettings, delay_s: float, pace: float) -> int:
    """A re-check delay slowed as much as the monthly budget slows polling (``pace``).

    Re-checks of open instances are most of what polling spends; a budget that stretches
    the poll interval stretches them too, but never beyond a day (or the configured cap).
    """
    if pace <= 1.0:
        return int(delay_s * 1000)
    cap = max(poll.open_recheck_max_seconds, poll.budget_max_interval_seconds)
    return int(min(delay_s * pace, max(cap, delay_s)) * 1000)


def next_check_ms(poll: PollSettings, checks: int, now: int, pace: float) -> int:
    """When to fetch an open instance again: exponential back-off from the initial delay,
    capped, then paced."""
    delay = min(
        poll.open_recheck_max_seconds,
        poll.open_recheck_initial_seconds * poll.open_recheck_factor ** (checks - 1),
    )
    return now + paced_ms(poll, delay, pace)
