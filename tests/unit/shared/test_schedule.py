"""Polling-only schedules: ``get`` per approval and freshness, and the best fit to a budget."""

from __future__ import annotations

import pytest

from dingdee_common.quota import HEADROOM
from dingdee_common.schedule import (
    DEFAULT,
    Schedule,
    _one,
    best_schedule,
    evaluate,
    fit_budget,
    gets_per_approval,
    paced,
)

H = 3600.0


class TestOneApproval:
    def test_finished_before_its_first_listing_costs_one_get(self) -> None:
        # created at 0, listed by the cycle at 6 h (phase 0.5 of 12 h), finished after 2 h
        gets, late = _one(Schedule(12 * H, 1 * H), 2.0, 0.5)
        assert (gets, late) == (1, pytest.approx(4.0))  # type: ignore[comparison-overlap]

    def test_open_instances_are_rechecked_at_the_cycles_after_they_are_due(self) -> None:
        # cycles at 1, 3, 5, 7 … h; first get at 1 h (open), due again at 2 h → 3 h (open),
        # due at 5 h → 5 h (open), due at 9 h → 9 h: finished at 8.5 h, seen 0.5 h later
        gets, late = _one(Schedule(2 * H, 1 * H, 2.0, 6 * H), 8.5, 0.5)
        assert (gets, late) == (4, pytest.approx(0.5))  # type: ignore[comparison-overlap]

    def test_a_young_window_waits_for_the_first_recheck(self) -> None:
        # 1-h cycles, first re-check 24 h after the window: no get before 23.5 h
        gets, late = _one(Schedule(1 * H, 24 * H, 2.0, 24 * H), 2.0, 0.5)
        assert gets == 1 and late == pytest.approx(23.5 - 2.0)


class TestSchedules:
    def test_rechecking_sooner_is_fresher_and_costs_more_gets(self) -> None:
        slow = evaluate(Schedule(1 * H, 24 * H, 2.0, 24 * H), 1000, 30)
        quick = evaluate(Schedule(1 * H, 1 * H, 2.0, 6 * H), 1000, 30)
        assert quick.freshness_p90_h < slow.freshness_p90_h
        assert quick.gets_per_approval > slow.gets_per_approval >= 1.0

    def test_the_best_fit_for_30_flows_fits_and_nothing_cheaper_is_fresher(self) -> None:
        best = best_schedule(1000, 30, 5000)
        assert best is not None
        assert best.calls_per_month <= 5000 * HEADROOM
        assert best.freshness_p50_h <= best.freshness_p90_h < 24
        # a shorter poll cycle with the same re-checks would be fresher, but does not fit
        s = best.schedule
        shorter = evaluate(
            Schedule(s.interval_s / 2, s.recheck_initial_s, s.recheck_factor, s.recheck_max_s),
            1000,
            30,
        )
        assert shorter.freshness_p90_h <= best.freshness_p90_h
        assert shorter.calls_per_month > 5000 * HEADROOM

    def test_no_schedule_fits_a_budget_the_listings_alone_exceed(self) -> None:
        assert best_schedule(1000, 300, 5000) is None


class TestFitBudget:
    """The default schedule stretched, re-checks alike, as little as a budget needs."""

    def test_the_least_stretch_that_fits(self) -> None:
        fit = fit_budget(DEFAULT, 1000, 2, 5000, ceiling_s=24 * H, cap_s=24 * H)
        assert fit.calls_per_month <= 5000 * HEADROOM
        pace = fit.schedule.interval_s / DEFAULT.interval_s
        assert fit.schedule == paced(DEFAULT, pace, 24 * H)
        tighter = evaluate(paced(DEFAULT, pace * 0.98, 24 * H), 1000, 2)
        assert tighter.calls_per_month > 5000 * HEADROOM
        assert fit.gets_per_approval < gets_per_approval(DEFAULT)

    def test_a_schedule_that_fits_is_kept_and_one_that_cannot_gets_the_ceiling(self) -> None:
        assert fit_budget(DEFAULT, 10, 1, 10**9, ceiling_s=24 * H, cap_s=24 * H).schedule == (
            DEFAULT
        )
        over = fit_budget(DEFAULT, 5000, 2, 5000, ceiling_s=24 * H, cap_s=24 * H)
        assert over.schedule.interval_s == 24 * H and over.calls_per_month > 5000 * HEADROOM

    def test_pacing_stretches_rechecks_up_to_the_cap(self) -> None:
        s = paced(DEFAULT, 100, 24 * H)
        assert (s.interval_s, s.recheck_initial_s, s.recheck_max_s) == (3000, 6000, 24 * H)
        assert paced(DEFAULT, 1.0, 24 * H) == DEFAULT
