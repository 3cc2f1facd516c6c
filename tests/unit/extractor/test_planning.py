"""The poll cycle's plan (``dingdee_extractor.planning``): windows, sweep range, re-checks."""

from __future__ import annotations

from dingdee_common.contracts import OpenInstance
from dingdee_extractor import planning
from dingdee_extractor.planning import DAY_MS
from dingdee_extractor.settings import PollSettings

NOW = 1_800_000_000_000
POLL = PollSettings(overlap_seconds=300, settle_seconds=5, lookback_max_days=365)
MIN = 60_000


class TestCycleRange:
    def test_from_the_watermark_less_the_overlap_to_now_less_settle(self) -> None:
        plan = planning.cycle_range(
            POLL, now=NOW, watermark=NOW - 10 * MIN, flow_start=0, swept_until=0
        )
        assert plan == planning.CycleRange(
            start=NOW - 15 * MIN, fresh_from=NOW - 15 * MIN, end=NOW - 5_000
        )

    def test_never_older_than_the_lookback(self) -> None:
        plan = planning.cycle_range(POLL, now=NOW, watermark=0, flow_start=0, swept_until=0)
        assert plan.fresh_from == NOW - 365 * DAY_MS + MIN

    def test_never_before_the_flow_starts(self) -> None:
        plan = planning.cycle_range(
            POLL, now=NOW, watermark=0, flow_start=NOW - DAY_MS, swept_until=0
        )
        assert plan.fresh_from == NOW - DAY_MS

    def test_a_backfill_stops_at_its_end(self) -> None:
        plan = planning.cycle_range(
            POLL, now=NOW, watermark=0, flow_start=0, swept_until=0, until_ms=NOW - DAY_MS
        )
        assert plan.end == NOW - DAY_MS

    def test_the_sweep_rides_along_when_its_gap_is_no_wider_than_the_window(self) -> None:
        watermark = NOW - 10 * MIN
        swept = NOW - 20 * MIN  # 5 min before fresh_from, the window is ~15 min wide
        plan = planning.cycle_range(
            POLL, now=NOW, watermark=watermark, flow_start=0, swept_until=swept
        )
        assert plan.start == swept and plan.fresh_from == NOW - 15 * MIN

    def test_the_sweep_does_not_ride_along_a_wide_gap_nor_a_backfill(self) -> None:
        far = NOW - DAY_MS
        plan = planning.cycle_range(
            POLL, now=NOW, watermark=NOW - 10 * MIN, flow_start=0, swept_until=far
        )
        assert plan.start == plan.fresh_from
        near = NOW - 20 * MIN
        backfill = planning.cycle_range(
            POLL, now=NOW, watermark=NOW - 10 * MIN, flow_start=0, swept_until=near, until_ms=NOW
        )
        assert backfill.start == backfill.fresh_from


class TestSweep:
    def test_settled_listing_moves_swept_until_only_when_contiguous(self) -> None:
        delay = 3600.0
        settled = planning.settled_until(0, NOW, NOW, 0, delay)
        assert settled == NOW - 3_600_000
        assert planning.settled_until(10, 20, NOW, 15, delay) == 21
        assert planning.settled_until(30, 40, NOW, 15, delay) == 15, "a gap: the sweep needs it"

    def test_sweep_range_is_bounded_by_lookback_delay_and_watermark(self) -> None:
        poll = PollSettings(sweep_lookback_days=7, sweep_delay_seconds=3600)
        lo, hi = planning.sweep_range(
            poll, now=NOW, watermark=NOW - 2 * 3_600_000, flow_start=0, swept_until=0
        )
        assert (lo, hi) == (NOW - 7 * DAY_MS, NOW - 2 * 3_600_000 - 1)
        lo, hi = planning.sweep_range(
            poll, now=NOW, watermark=NOW, flow_start=0, swept_until=NOW - DAY_MS
        )
        assert (lo, hi) == (NOW - DAY_MS, NOW - 3_600_000)


class TestRechecks:
    def test_backs_off_exponentially_then_caps(self) -> None:
        poll = PollSettings(
            open_recheck_initial_seconds=60, open_recheck_factor=2, open_recheck_max_seconds=300
        )
        delays = [planning.next_check_ms(poll, c, NOW, 1.0) - NOW for c in (1, 2, 3, 4)]
        assert delays == [60_000, 120_000, 240_000, 300_000]

    def test_a_budget_pace_stretches_the_delay_up_to_the_cap(self) -> None:
        poll = PollSettings(open_recheck_max_seconds=3600, budget_max_interval_seconds=7200)
        assert planning.paced_ms(poll, 60, 1.0) == 60_000
        assert planning.paced_ms(poll, 60, 3.0) == 180_000
        assert planning.paced_ms(poll, 3600, 10.0) == 7_200_000

    def test_due_lists_the_instances_whose_time_has_come(self) -> None:
        opened = {
            "a": OpenInstance(create_time_ms=0, next_check_ms=NOW - 1),
            "b": OpenInstance(create_time_ms=0, next_check_ms=NOW),
            "c": OpenInstance(create_time_ms=0, next_check_ms=NOW + 1),
        }
        assert planning.due(opened, NOW) == ["a", "b"]
