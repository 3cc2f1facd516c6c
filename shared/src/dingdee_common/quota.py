"""DingTalk's monthly call allowance: counting calls, projecting the month, pacing to a budget.

DingTalk meters ``listids`` and ``get`` per organisation and calendar month (China Standard Time);
token calls are exempt (contract §5.1). One model serves three places: the extractor picks the poll
interval that keeps an app inside its budget, ``dingdee quota`` reports the projected month, and
the benchmark projects a month from a measured week.

The model splits the calls into two kinds, because only one of them depends on the poll interval:
``get`` calls follow the approvals (about one per approval with events, a little more when polling
re-checks open ones), while ``listids`` calls are spent per poll cycle per flow (one page at least,
sweeps included). So: month = used + get rate × time left + flows × lists per cycle × cycles left.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal

from dingdee_common.contracts import CallUsage

__all__ = [
    "CST",
    "DEFAULT_MONTHLY_BUDGET",
    "EVENT_GETS_PER_APPROVAL",
    "HEADROOM",
    "MONTH_SECONDS",
    "CallKind",
    "Demand",
    "count_call",
    "count_cycle",
    "events_month",
    "interval_for_budget",
    "month_bounds_ms",
    "month_of",
    "project_month",
    "sampling_alarms",
    "total_usage",
]

CST = timezone(timedelta(hours=8), "CST")
MONTH_SECONDS = 30 * 86_400.0  # a planning month
RATE_FLOOR_SECONDS = 3600.0  # no rate is extrapolated from less than an hour of counting
# An app without its own budget gets the standard edition's allowance (dingtalk.md §5.1: 5 000
# metered calls a month per organisation in the 2026 doc; older pages say 10 000).
DEFAULT_MONTHLY_BUDGET = 5000
HEADROOM = 0.9  # pace to 90 % of a budget: counts can lag one step, other tools share the quota

CallKind = Literal["list", "get"]

# ``get`` calls per approval with events on: its finish event's (a lost one is found by the
# re-check or the verification, which then costs that approval's only ``get``). Polling's figure
# depends on its schedule and comes from :func:`dingdee_common.schedule.gets_per_approval`.
EVENT_GETS_PER_APPROVAL = 1.0
PAGE = 20  # ids per listids page (contract §6.2)


def month_of(ms: int) -> str:
    """``YYYY-MM`` of a Unix time in milliseconds, in DingTalk's metering zone."""
    return datetime.fromtimestamp(ms / 1000, CST).strftime("%Y-%m")


def month_bounds_ms(month: str) -> tuple[int, int]:
    """``[start, end)`` of ``YYYY-MM`` (CST) in Unix milliseconds."""
    start = datetime.strptime(month, "%Y-%m").replace(tzinfo=CST)
    end = (start + timedelta(days=32)).replace(day=1)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def _current(usage: CallUsage | None, app: str, now_ms: int) -> CallUsage:
    month = month_of(now_ms)
    if usage is None or usage.month != month or usage.app != app:
        return CallUsage(app=app, month=month, since_ms=now_ms)
    return usage


def count_call(usage: CallUsage | None, app: str, kind: CallKind, now_ms: int) -> CallUsage:
    """``usage`` with one more metered call; a new month starts a new count."""
    usage = _current(usage, app, now_ms)
    field = "list_calls" if kind == "list" else "get_calls"
    return usage.model_copy(update={field: getattr(usage, field) + 1})


def count_cycle(usage: CallUsage | None, app: str, now_ms: int) -> CallUsage:
    """``usage`` with one more finished poll cycle."""
    usage = _current(usage, app, now_ms)
    return usage.model_copy(update={"cycles": usage.cycles + 1})


def total_usage(usages: Iterable[CallUsage | None], app: str, month: str) -> CallUsage:
    """The sum of one app's counts in ``month`` (one count per flow or backfill)."""
    mine = [u for u in usages if u is not None and u.app == app and u.month == month]
    start, _ = month_bounds_ms(month)
    return CallUsage(
        app=app,
        month=month,
        since_ms=min((u.since_ms for u in mine), default=start),
        list_calls=sum(u.list_calls for u in mine),
        get_calls=sum(u.get_calls for u in mine),
        cycles=sum(u.cycles for u in mine),
        contact_calls=sum(u.contact_calls for u in mine),
    )


@dataclass(frozen=True)
class Demand:
    """What an app's polling costs: ``get`` calls a second and ``listids`` calls per cycle."""

    gets_per_second: float
    lists_per_cycle: float  # per flow
    flows: int
    sweep_interval_s: float | None = None  # planned only: measured cycles include their sweeps

    @classmethod
    def measured(cls, usage: CallUsage, now_ms: int, flows: int) -> Demand:
        """Rates from this month's counts (``usage`` summed over ``flows`` flows)."""
        elapsed = max((now_ms - usage.since_ms) / 1000, RATE_FLOOR_SECONDS)
        per_cycle = usage.list_calls / usage.cycles if usage.cycles else 1.0
        return cls(usage.get_calls / elapsed, max(per_cycle, 1.0), max(flows, 1))

    @classmethod
    def planned(
        cls,
        approvals_per_month: float,
        gets_per_approval: float,
        flows: int,
        sweep_interval_s: float | None = 24 * 3600.0,
    ) -> Demand:
        """Rates for an organisation that does not run dingdee yet.

        A cycle lists one page per flow, and a page more for every 20 approvals it finds; a
        compensation sweep (at most one a cycle) lists about as much again.
        """
        return cls(
            gets_per_second=approvals_per_month * gets_per_approval / MONTH_SECONDS,
            lists_per_cycle=1.0,
            flows=max(flows, 1),
            sweep_interval_s=sweep_interval_s,
        )

    def cycle_calls(self, interval_s: float) -> float:
        """``listids`` calls of one cycle over all flows (one page per 20 new ids, at least one)."""
        pages = max(
            self.lists_per_cycle, math.ceil(self.gets_per_second * interval_s / self.flows / 20)
        )
        if self.sweep_interval_s:
            pages *= 1 + min(1.0, interval_s / self.sweep_interval_s)
        return self.flows * pages


def project_month(used: float, demand: Demand, interval_s: float, remaining_s: float) -> float:
    """Calls at the end of the month if polling keeps ``interval_s`` for the ``remaining_s``."""
    cycles = remaining_s / interval_s
    return used + demand.gets_per_second * remaining_s + cycles * demand.cycle_calls(interval_s)


def interval_for_budget(
    budget: int,
    used: float,
    demand: Demand,
    remaining_s: float,
    *,
    floor_s: float,
    ceiling_s: float,
) -> float:
    """The shortest poll interval in ``[floor_s, ceiling_s]`` whose projected month fits.

    Fits means at most ``HEADROOM`` of ``budget``. When even ``ceiling_s`` does not fit (the
    approvals alone spend the budget), ``ceiling_s`` is returned: polling is the safety net and
    never stops.
    """
    target = budget * HEADROOM
    if project_month(used, demand, floor_s, remaining_s) <= target:
        return floor_s
    lo, hi = floor_s, ceiling_s
    if project_month(used, demand, hi, remaining_s) > target:
        return ceiling_s
    for _ in range(40):  # the projection falls as the interval grows: bisect
        mid = (lo + hi) / 2
        if project_month(used, demand, mid, remaining_s) <= target:
            hi = mid
        else:
            lo = mid
    return hi


def events_month(
    approvals_per_month: float,
    flows: int,
    *,
    verify_interval_s: float,
    gets_per_approval: float = EVENT_GETS_PER_APPROVAL,
    long_gaps_per_month: float = 1.0,
    verify_sample: float = 1.0,
    lost_events: float = 0.0,
) -> float:
    """Calls in a month with events on and the gap-aware safety net (DESIGN §5).

    ``get``: about one per approval (its finish event; a lost one is found by a re-check or
    the verification, which then costs that approval's only ``get``). ``listids``: each flow is
    verified (listed since its last verification, a page per 20 approvals) every
    ``verify_interval_s``, or sooner when a gap long enough to list closes (a listener outage, a
    restart): the gap's listing *is* the verification and restarts its clock. With gaps at a
    rate ``r`` a listing comes every ``min(V, Exp(r))``, on average ``(1 - e^(-rV)) / r``.
    Short disconnections cost nothing: the verification lists them anyway. With
    ``verify_sample`` below 1 the flows take turns: each is listed every ``ceil(1 / sample)``
    intervals, and a sampled listing that finds an approval no event reported raises the alarm:
    every flow not in turn lists too (:func:`sampling_alarms`), counted as further gaps.
    """
    flows = max(flows, 1)
    turns = max(1, math.ceil(1 / verify_sample - 1e-9))
    v = verify_interval_s * turns / MONTH_SECONDS  # in months
    alarms = sampling_alarms(approvals_per_month, verify_interval_s, turns, lost_events)
    r = long_gaps_per_month + alarms * (1 - 1 / turns)
    spacing = (1 - math.exp(-r * v)) / r if r > 0 else v  # months between a flow's listings
    per_listing = approvals_per_month / flows * spacing
    lists = flows / spacing * max(1, math.ceil(per_listing / PAGE))
    return approvals_per_month * gets_per_approval + lists


def sampling_alarms(
    approvals_per_month: float, verify_interval_s: float, turns: int, lost_events: float
) -> float:
    """Alarms a month a sampled verification raises (DESIGN §5 point 4): listings that find an
    approval no event reported, after which every flow lists.

    DingTalk losing each event with probability ``lost_events`` (independently; the simulated
    week's 5 %), an approval is found only by a listing when both its ``start`` and its
    ``finish`` were lost, a share ``lost_events²``. The flows in turn list, together, the
    creation times of about one interval of all approvals (each of its ``turns`` intervals'
    worth), so an interval raises the alarm with probability ``1 − e^(−λ)``, ``λ`` the lost
    approvals of an interval. Without sampling (``turns`` 1) there is no alarm.
    """
    if turns <= 1 or lost_events <= 0:
        return 0.0
    per_interval = verify_interval_s / MONTH_SECONDS  # in months
    lost = approvals_per_month * per_interval * lost_events**2
    return (1 - math.exp(-lost)) / per_interval
