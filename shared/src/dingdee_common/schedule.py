"""Polling without events: which schedule fits a monthly budget, and how fresh it keeps things.

A polling extractor spends calls two ways (:mod:`dingdee_common.quota`): ``listids`` per cycle
and flow, and ``get`` per approval — one when it is first listed, one more per re-check while
it is still open. The re-check schedule (first after ``recheck_initial``, then ``× factor`` up to
``recheck_max``; due re-checks run at the next cycle) decides both the ``get`` per approval and
the *freshness*: the hours from an approval's finish to its snapshot. This module evaluates a
schedule over a fixed spread of approval durations (log-normal, median 6 h, a tail of days, as
the benchmarks simulate) and creation times within a cycle — deterministic, no sampling noise —
and :func:`best_schedule` searches a grid for the freshest one that fits a budget.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from statistics import NormalDist

from dingdee_common.quota import HEADROOM, MONTH_SECONDS, Demand, project_month

__all__ = ["Schedule", "ScheduleFigures", "best_schedule", "evaluate"]

HOUR = 3600.0
# approval durations in hours: log-normal (mu 1.8, sigma 1.0: median 6 h), at most 6 days
DURATION_MU, DURATION_SIGMA, DURATION_MAX_H = 1.8, 1.0, 144.0
_QUANTILES, _PHASES = 200, 4
SWEEP_DELAY_S = 3600.0  # PollSettings.sweep_delay_seconds: a cycle this long carries the sweep
INTERVALS_H = (0.5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 16, 24)
INITIALS_H = (1, 2, 4, 6, 8, 12, 24)
MAXIMA_H = (6, 12, 24, 48)


@dataclass(frozen=True)
class Schedule:
    """A polling schedule (``DINGDEE_POLL__*``), in seconds."""

    interval_s: float
    recheck_initial_s: float
    recheck_factor: float = 2.0
    recheck_max_s: float = 6 * HOUR

    def describe(self) -> str:
        def h(s: float) -> str:
            return f"{s / HOUR:g} h"

        return (
            f"poll every {h(self.interval_s)}, re-check open approvals after "
            f"{h(self.recheck_initial_s)} ×{self.recheck_factor:g} up to {h(self.recheck_max_s)}"
        )


@dataclass(frozen=True)
class ScheduleFigures:
    """What a schedule costs and delivers for an organisation."""

    schedule: Schedule
    gets_per_approval: float
    calls_per_month: float
    freshness_p50_h: float
    freshness_p90_h: float


def _durations_h() -> list[float]:
    normal = NormalDist(DURATION_MU, DURATION_SIGMA)
    return [
        min(DURATION_MAX_H, math.exp(normal.inv_cdf((q + 0.5) / _QUANTILES)))
        for q in range(_QUANTILES)
    ]


def _one(s: Schedule, duration_h: float, phase: float) -> tuple[int, float]:
    """``(gets, hours from finish to snapshot)`` of an approval created at 0, first listed by
    the cycle at ``phase × interval``, that finishes ``duration_h`` later."""
    interval, finish = s.interval_s / HOUR, duration_h
    first_cycle = phase * interval
    # a window younger than the first re-check waits for it (poller._defer_young)
    due = max(first_cycle, first_cycle - interval + s.recheck_initial_s / HOUR)
    gets = 0
    while True:
        at = first_cycle + math.ceil(max(0.0, due - first_cycle) / interval - 1e-9) * interval
        gets += 1
        if finish <= at:
            return gets, at - finish
        delay = min(s.recheck_max_s, s.recheck_initial_s * s.recheck_factor ** (gets - 1))
        due = at + delay / HOUR


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def evaluate(s: Schedule, approvals_per_month: float, flows: int) -> ScheduleFigures:
    """Calls a month (the quota model, ``get`` per approval from the schedule) and freshness."""
    gets: list[int] = []
    fresh: list[float] = []
    for duration, k in itertools.product(_durations_h(), range(_PHASES)):
        n, late = _one(s, duration, (k + 0.5) / _PHASES)
        gets.append(n)
        fresh.append(late)
    per = sum(gets) / len(gets)
    # a cycle of at least the sweep delay carries the sweep along (planning.ride_along)
    sweep = None if s.interval_s >= SWEEP_DELAY_S else 24 * HOUR
    demand = Demand.planned(approvals_per_month, per, flows, sweep_interval_s=sweep)
    calls = project_month(0, demand, s.interval_s, MONTH_SECONDS)
    return ScheduleFigures(s, per, calls, _quantile(fresh, 0.5), _quantile(fresh, 0.9))


def best_schedule(approvals_per_month: float, flows: int, budget: int) -> ScheduleFigures | None:
    """The schedule with the lowest p90 freshness (then p50, then calls) whose month fits
    ``HEADROOM`` of ``budget``; ``None`` when none of the grid's does."""
    best: ScheduleFigures | None = None
    for interval, initial, factor, most in itertools.product(
        INTERVALS_H, INITIALS_H, (1.0, 2.0), MAXIMA_H
    ):
        if most < initial or (factor == 1.0 and most != initial):
            continue
        figures = evaluate(
            Schedule(interval * HOUR, initial * HOUR, factor, most * HOUR),
            approvals_per_month,
            flows,
        )
        if figures.calls_per_month > budget * HEADROOM:
            continue
        key = (figures.freshness_p90_h, figures.freshness_p50_h, figures.calls_per_month)
        if best is None or key < (
            best.freshness_p90_h,
            best.freshness_p50_h,
            best.calls_per_month,
        ):
            best = figures
    return best
