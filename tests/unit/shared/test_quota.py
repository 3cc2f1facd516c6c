"""The monthly call model: counting by CST month, projecting, and the interval a budget affords."""

from __future__ import annotations

import math

import pytest

from dingdee_common.contracts import CallUsage
from dingdee_common.quota import (
    HEADROOM,
    MONTH_SECONDS,
    Demand,
    count_call,
    count_cycle,
    events_month,
    interval_for_budget,
    month_bounds_ms,
    month_of,
    project_month,
    sampling_alarms,
    total_usage,
)

NOV_1_CST = 1_793_462_400_000  # 2026-11-01 00:00 CST
HOUR = 3600.0


def test_months_are_counted_in_china_standard_time() -> None:
    assert month_of(NOV_1_CST) == "2026-11"
    assert month_of(NOV_1_CST - 1) == "2026-10"  # 2026-10-31 23:59:59.999 CST, 15:59 UTC
    start, end = month_bounds_ms("2026-11")
    assert start == NOV_1_CST
    assert (end - start) / 1000 == 30 * 86_400
    assert month_bounds_ms("2026-12")[1] - month_bounds_ms("2026-12")[0] == 31 * 86_400_000


def test_counts_accumulate_and_restart_with_a_new_month() -> None:
    usage = None
    for _ in range(3):
        usage = count_call(usage, "main", "get", NOV_1_CST + 5000)
    usage = count_call(usage, "main", "list", NOV_1_CST + 6000)
    usage = count_cycle(usage, "main", NOV_1_CST + 7000)
    assert (usage.get_calls, usage.list_calls, usage.cycles, usage.calls) == (3, 1, 1, 4)
    assert usage.since_ms == NOV_1_CST + 5000
    december = count_call(usage, "main", "get", month_bounds_ms("2026-11")[1])
    assert (december.month, december.calls, december.cycles) == ("2026-12", 1, 0)


def test_total_usage_sums_one_app_and_month() -> None:
    a = CallUsage(app="main", month="2026-11", since_ms=NOV_1_CST + 10, list_calls=5, get_calls=7)
    b = CallUsage(app="main", month="2026-11", since_ms=NOV_1_CST + 5, get_calls=1, cycles=2)
    other_app = CallUsage(app="hr", month="2026-11", since_ms=NOV_1_CST, get_calls=100)
    old = CallUsage(app="main", month="2026-10", since_ms=NOV_1_CST - 10**9, get_calls=100)
    total = total_usage([a, None, b, other_app, old], "main", "2026-11")
    assert (total.list_calls, total.get_calls, total.cycles, total.since_ms) == (
        5,
        8,
        2,
        NOV_1_CST + 5,
    )
    assert total_usage([], "main", "2026-11").calls == 0


def test_measured_demand_uses_rates_and_lists_per_cycle() -> None:
    usage = CallUsage(
        app="main", month="2026-11", since_ms=NOV_1_CST, list_calls=40, get_calls=360, cycles=20
    )
    demand = Demand.measured(usage, NOV_1_CST + int(10 * HOUR * 1000), flows=2)
    assert demand.gets_per_second == pytest.approx(360 / (10 * HOUR))
    assert demand.lists_per_cycle == 2.0
    # less than an hour of counting is not extrapolated as if it were a month's rate
    early = Demand.measured(usage, NOV_1_CST + 1000, flows=2)
    assert early.gets_per_second == pytest.approx(360 / HOUR)


def test_projection_adds_gets_and_cycles() -> None:
    demand = Demand.planned(approvals_per_month=1000, gets_per_approval=1.1, flows=2)
    # hourly cycles: one page per flow, plus the daily sweep every 24th cycle
    assert project_month(0, demand, HOUR, MONTH_SECONDS) == pytest.approx(1100 + 2 * 720 * 25 / 24)
    # daily cycles each sweep once
    assert project_month(500, demand, 24 * HOUR, MONTH_SECONDS) == pytest.approx(
        500 + 1100 + 2 * 30 * 2
    )
    measured = Demand(gets_per_second=0.0, lists_per_cycle=1.5, flows=2)
    assert project_month(0, measured, HOUR, MONTH_SECONDS) == pytest.approx(2 * 720 * 1.5)


def test_pages_grow_when_a_cycle_finds_more_than_twenty_ids() -> None:
    demand = Demand.planned(
        approvals_per_month=100_000, gets_per_approval=1.0, flows=1, sweep_interval_s=None
    )
    per_day = 100_000 / 30  # ids a daily cycle finds
    assert demand.cycle_calls(86_400) == -(-per_day // 20)
    assert demand.cycle_calls(60) == 1


def test_budget_stretches_the_interval_just_enough() -> None:
    demand = Demand.planned(approvals_per_month=1000, gets_per_approval=1.1, flows=3)
    budget = 3000
    interval = interval_for_budget(budget, 0, demand, MONTH_SECONDS, floor_s=30, ceiling_s=86_400)
    assert 30 < interval < 86_400
    assert project_month(0, demand, interval, MONTH_SECONDS) <= budget * HEADROOM + 1e-6
    assert project_month(0, demand, interval * 0.95, MONTH_SECONDS) > budget * HEADROOM


def test_budget_keeps_the_configured_interval_when_it_fits() -> None:
    demand = Demand.planned(approvals_per_month=100, gets_per_approval=1.0, flows=1)
    assert interval_for_budget(50_000, 0, demand, MONTH_SECONDS, floor_s=60, ceiling_s=86_400) == 60


def test_an_overspent_budget_polls_at_the_ceiling_and_never_stops() -> None:
    demand = Demand.planned(approvals_per_month=5000, gets_per_approval=1.0, flows=1)
    assert interval_for_budget(4000, 0, demand, MONTH_SECONDS, floor_s=60, ceiling_s=86_400) == (
        86_400
    )
    assert interval_for_budget(100, 200, demand, 0.0, floor_s=60, ceiling_s=86_400) == 86_400


class TestEventsMonth:
    """Events mode: a get per approval and each flow's verification (DESIGN §5)."""

    def test_30_flows_verified_every_14_days_cost_a_page_each(self) -> None:
        month = events_month(
            1000, 30, verify_interval_s=14 * 86_400, gets_per_approval=1.0, long_gaps_per_month=0
        )
        assert month == pytest.approx(1000 + 30 * 30 / 14)

    def test_a_long_gap_brings_verifications_forward_but_never_doubles_them(self) -> None:
        def lists(gaps: float) -> float:
            return events_month(0, 30, verify_interval_s=14 * 86_400, long_gaps_per_month=gaps)

        assert lists(0) < lists(1) < lists(0) + 30 * 1  # one gap: fewer than one extra per flow
        assert lists(1) < lists(4)

    def test_a_busy_flow_needs_a_page_per_20_approvals_it_lists(self) -> None:
        # 30 days / 14 = 2.14 verifications a month, each listing 2 000 x 14/30 = 933 ids
        month = events_month(2000, 1, verify_interval_s=14 * 86_400, long_gaps_per_month=0)
        assert month == pytest.approx(2000 * 1.0 + 30 / 14 * 47)

    def test_a_sampled_verification_lists_each_flow_once_per_round_of_turns(self) -> None:
        def lists(sample: float) -> float:
            return events_month(
                0, 30, verify_interval_s=7 * 86_400, long_gaps_per_month=0, verify_sample=sample
            )

        assert lists(1.0) == pytest.approx(30 * 30 / 7)
        assert lists(0.25) == pytest.approx(30 * 30 / 28)  # four turns of 7 days
        assert lists(0.3) == lists(0.25) < lists(0.5) < lists(1.0)


class TestSamplingAlarms:
    """A sampled listing that finds an approval whose two events were lost lists every flow."""

    def test_no_alarm_without_sampling_or_without_lost_events(self) -> None:
        assert sampling_alarms(1000, 14 * 86_400, 1, 0.05) == 0.0
        assert sampling_alarms(1000, 14 * 86_400, 4, 0.0) == 0.0

    def test_an_interval_raises_the_alarm_when_it_holds_a_doubly_lost_approval(self) -> None:
        # 1 000 a month, 15-day intervals: 500 approvals an interval, 5 % of events lost:
        # 1.25 lost both events; P(alarm) = 1 - e^-1.25 per interval, two intervals a month
        assert sampling_alarms(1000, 15 * 86_400, 4, 0.05) == pytest.approx(
            2 * (1 - math.exp(-1.25))
        )

    def test_lossy_delivery_takes_back_part_of_what_sampling_saves(self) -> None:
        def month(sample: float, lost: float) -> float:
            return events_month(
                300,
                30,
                verify_interval_s=14 * 86_400,
                long_gaps_per_month=0,
                verify_sample=sample,
                lost_events=lost,
            )

        full = month(1.0, 0.05)
        assert full == month(1.0, 0.0)  # without sampling a find raises no alarm
        assert month(0.25, 0.0) < month(0.25, 0.01) < month(0.25, 0.05) < full
