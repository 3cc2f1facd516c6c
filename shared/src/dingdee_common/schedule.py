"""Polling without events: which schedule fits a monthly budget, and how fresh it keeps things.

A polling extractor spends calls two ways (:mod:`dingdee_common.quota`): ``listids`` per cycle
and flow, and ``get`` per approval — one when it is first listed, one more per re-check while
it is still open. The re-check schedule (first after ``recheck_initial``, then ``× factor`` up to
``recheck_max``; due re-checks run at the next cycle) decides both the ``get`` per approval and
the *freshness*: the hours from an approval's finish to its snapshot. This module evaluates a
schedule over a fixed spread of approval durations (log-normal, median 6 h, a tail of days, as
the benchmarks simulate) and creation times within a cycle — deterministic, no sampling noise —
and :func:`best_schedule` searches a grid for the freshest one that fits a budget.

This is the one place the ``get`` calls per approval of polling come from: ``dingdee quota
plan``, the doctor's budget check and the extractor README's figures all evaluate the schedule
they are about (:data:`DEFAULT` is the extractor's default, about 10 ``get`` per approval at 30-s
cycles; fewer at longer cycles, since a re-check waits for the next cycle). A budget that stretches
polling stretches the re-checks too (``planning.paced_ms``): :func:`paced` and :func:`fit_budget`
follow that rule, so a planned fit is the one the extractor will run.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, replace
from statistics import NormalDist

from dingdee_common.quota import HEADROOM, MONTH_SECONDS, Demand, project_month

__all__ = [
    "DEFAULT",
    "Schedule",
    "ScheduleFigures",
    "best_schedule",
    "evaluate",
    "fit_budget",
    "gets_per_approval",
    "paced",
]

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


# the extractor's ``PollSettings`` defaults (interval, open_recheck_*), held equal by a unit test
DEFAULT = Schedule(30.0, 60.0, 2.0, 6 * HOUR)


@functools.cache
def _durations_h() -> tuple[float, ...]:
    normal = NormalDist(DURATION_MU, DURATION_SIGMA)
    return tuple(
        min(DURATION_MAX_H, math.exp(normal.inv_cdf((q + 0.5) / _QUANTILES)))
        for q in range(_QUANTILES)
    )


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


def _spread(s: Schedule) -> tuple[list[int], list[float]]:
    """Each approval of the fixed spread: its ``get`` calls and hours from finish to snapshot."""
    gets: list[int] = []
    fresh: list[float] = []
    for duration, k in itertools.product(_durations_h(), range(_PHASES)):
        n, late = _one(s, duration, (k + 0.5) / _PHASES)
        gets.append(n)
        fresh.append(late)
    return gets, fresh


def gets_per_approval(s: Schedule) -> float:
    """``get`` calls per approval polling with ``s`` costs (first listing and re-checks)."""
    gets, _ = _spread(s)
    return sum(gets) / len(gets)


def evaluate(
    s: Schedule,
    approvals_per_month: float,
    flows: int,
    sweep_interval_s: float | None = 24 * HOUR,
) -> ScheduleFigures:
    """Calls a month (the quota model, ``get`` per approval from the schedule) and freshness."""
    gets, fresh = _spread(s)
    per = sum(gets) / len(gets)
    # a cycle of at least the sweep delay carries the sweep along (planning.ride_along)
    sweep = None if s.interval_s >= SWEEP_DELAY_S else sweep_interval_s
    demand = Demand.planned(approvals_per_month, per, flows, sweep_interval_s=sweep)
    calls = project_month(0, demand, s.interval_s, MONTH_SECONDS)
    return ScheduleFigures(s, per, calls, _quantile(fresh, 0.5), _quantile(fresh, 0.9))


def paced(s: Schedule, pace: float, cap_s: float) -> Schedule:
    """``s`` as the extractor runs it when a budget stretches its interval ``pace`` times: each
    re-check delay ``d`` becomes ``min(d × pace, max(cap_s, d))`` (``planning.paced_ms``, with
    ``cap_s`` the larger of ``open_recheck_max`` and ``budget_max_interval``)."""
    if pace <= 1.0:
        return s

    def stretched(d: float) -> float:
        return min(d * pace, max(cap_s, d))

    return replace(
        s,
        interval_s=s.interval_s * pace,
        recheck_initial_s=stretched(s.recheck_initial_s),
        recheck_max_s=stretched(s.recheck_max_s),
    )


def fit_budget(
    s: Schedule,
    approvals_per_month: float,
    flows: int,
    budget: int,
    *,
    ceiling_s: float,
    cap_s: float,
    sweep_interval_s: float | None = 24 * HOUR,
) -> ScheduleFigures:
    """The figures of ``s`` stretched as little as fits ``HEADROOM`` of ``budget`` (the poll
    interval at most ``ceiling_s``, re-checks paced alike); the ceiling's when nothing fits."""
    target = budget * HEADROOM

    def at(pace: float) -> ScheduleFigures:
        return evaluate(paced(s, pace, cap_s), approvals_per_month, flows, sweep_interval_s)

    most = max(1.0, ceiling_s / s.interval_s)
    configured, best = at(1.0), at(most)
    if configured.calls_per_month <= target or best.calls_per_month > target:
        return configured if configured.calls_per_month <= target else best
    lo, hi = 1.0, most
    for _ in range(30):  # calls fall as the pace grows (re-checks quantised: nearly): bisect
        mid = (lo + hi) / 2
        if (figures := at(mid)).calls_per_month <= target:
            hi, best = mid, figures
        else:
            lo = mid
    return best


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
