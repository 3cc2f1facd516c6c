"""The events-mode safety net's planning: which creation times a gap could have hidden."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from dingdee_extractor.gapnet import (
    Coverage,
    Sample,
    covered_creation,
    listing_end,
    merge,
    prompt,
    uncovered,
    verification_due,
)


def test_merge_joins_overlapping_and_touching_intervals_and_drops_empty_ones() -> None:
    assert merge([(10, 20), (0, 5), (6, 8), (19, 30), (40, 39)]) == [(0, 8), (10, 30)]


def test_covered_creation_shrinks_each_interval_by_the_margin() -> None:
    assert covered_creation([(0, 100), (200, 210)], 10) == [(10, 90)]  # the second is too short


def test_uncovered_is_the_gaps_inside_the_range() -> None:
    covered = [(10, 19), (30, 39)]
    assert uncovered(covered, 0, 50) == [(0, 9), (20, 29), (40, 50)]
    assert uncovered(covered, 12, 35) == [(20, 29)]
    assert uncovered(covered, 10, 19) == []
    assert uncovered([], 5, 7) == [(5, 7)]


@given(
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 60)), max_size=8),
    st.integers(0, 150),
    st.integers(0, 150),
)
def test_uncovered_and_covered_partition_the_range_exactly(
    raw: list[tuple[int, int]], lo: int, width: int
) -> None:
    covered = [(a, a + w) for a, w in raw]
    hi = lo + width
    gaps = uncovered(covered, lo, hi)
    in_gap = {t for a, b in gaps for t in range(a, b + 1)}
    in_cover = {t for a, b in covered for t in range(a, b + 1)}
    assert in_gap == {t for t in range(lo, hi + 1) if t not in in_cover}
    assert gaps == merge(gaps)  # sorted, disjoint, not touching


def test_listing_end_stops_at_the_connected_coverage_or_before_an_open_gap() -> None:
    kw = {"gap_max_ms": 1000, "margin_ms": 10}
    # connected: up to where the open interval's coverage ends (not a gap, not yet settled)
    assert listing_end(500, 600, connected_until=590, gap_start=None, **kw) == 500
    assert listing_end(700, 600, connected_until=590, gap_start=None, **kw) == 580
    # a gap that opened at 400 and is still open: not into it, until it lasted gap_max
    assert listing_end(700, 600, connected_until=None, gap_start=400, **kw) == 389
    assert listing_end(1700, 1600, connected_until=None, gap_start=400, **kw) == 1700
    # never connected and no history: plain polling
    assert listing_end(700, 600, connected_until=None, gap_start=None, **kw) == 700


def test_a_disconnect_leaves_exactly_its_gap_plus_margins_to_list() -> None:
    cov = Coverage()
    cov.connected_at(1_000)
    cov.disconnected_at(5_000)
    assert cov.gap_since == 5_000 and not cov.connected
    cov.connected_at(5_400)
    covered = covered_creation(cov.intervals(9_000), 100)
    assert covered == [(1_100, 4_900), (5_500, 8_900)]
    assert uncovered(covered, 1_100, 8_900) == [(4_901, 5_499)]


def test_a_failed_event_cuts_the_interval_where_it_arrived() -> None:
    cov = Coverage()
    cov.connected_at(0)
    token = cov.begin(3_000)
    cov.failed_at(3_500)
    cov.end(token)
    assert cov.intervals(10_000) == [(0, 2_999), (3_501, 10_000)]
    assert uncovered(covered_creation(cov.intervals(10_000), 100), 100, 9_900) == [(2_900, 3_600)]


def test_an_event_in_flight_holds_the_coverage_back_until_its_snapshot_is_acked() -> None:
    cov = Coverage()
    cov.connected_at(0)
    token = cov.begin(2_000)
    assert cov.intervals(5_000) == [(0, 1_999)]
    assert cov.connected_until(5_000) == 1_999
    cov.end(token)
    assert cov.intervals(5_000) == [(0, 5_000)]


def test_a_restart_gap_runs_from_the_last_recorded_end_to_the_new_connection() -> None:
    cov = Coverage()
    cov.restored([(0, 4_000)])
    cov.restored([(0, 5_000)])  # another flow's checkpoint of the same app, saved later
    assert cov.gap_since == 5_000 and cov.connected_until(6_000) is None
    cov.connected_at(8_000)
    covered = covered_creation(cov.intervals(20_000), 100)
    assert uncovered(covered, 1_000, 19_000) == [(4_901, 8_099)]


def test_only_gaps_longer_than_the_minimum_are_listed_at_once() -> None:
    # windows are gaps widened by a 100 ms margin on each side
    windows = [(0, 299), (1_000, 1_200), (5_000, 5_700)]
    assert prompt(windows, 300, 100) == [(5_000, 5_700)]
    assert prompt(windows, 0, 100) == [(0, 299), (1_000, 1_200), (5_000, 5_700)]


def test_closed_gaps_are_recorded_in_order_including_a_restart_gap() -> None:
    cov = Coverage()
    cov.restored([(0, 1_000)])  # the last recorded end before a restart
    cov.connected_at(5_000)
    cov.disconnected_at(9_000)
    cov.connected_at(9_500)
    assert cov.closed_gaps == [(1_000, 5_000), (9_000, 9_500)]


class TestSampledVerification:
    """A verification interval lists a share of the flows; every flow still takes its turn."""

    DAY = 86_400_000

    def listings(
        self, share: float, flows: int, days: int, alarm_on: int | None = None
    ) -> list[list[int]]:
        """Per day, the flows (slots) whose verification a daily tick finds due."""
        last = [0] * flows
        alarm: int | None = None
        out: list[list[int]] = []
        for day in range(1, days + 1):
            now = day * self.DAY
            if alarm_on == day:
                alarm = now - 1
            due = [
                f
                for f in range(flows)
                if verification_due(now, last[f], 2 * self.DAY, Sample(share, f, alarm))
            ]
            for f in due:
                last[f] = now
            out.append(due)
        return out

    def test_everything_every_interval_without_sampling(self) -> None:
        assert verification_due(10, 0, 10, None) and not verification_due(9, 0, 10, None)
        assert verification_due(10, 0, 10, Sample(1.0, 3, alarm_ms=5))
        assert not verification_due(9, 0, 10, Sample(1.0, 3, alarm_ms=5))  # no alarms when full

    def test_a_quarter_lists_a_quarter_and_every_flow_within_four_intervals(self) -> None:
        flows, days = 8, 64
        per_day = self.listings(0.25, flows, days)
        listed = [f for day in per_day for f in day]
        # warm-up aside, a quarter of the flows' listings: one each 4 intervals (8 days)
        assert len(listed) <= flows + flows * days // 8 + flows
        for f in range(flows):
            days_listed = [d for d, due in enumerate(per_day, 1) if f in due]
            gaps = [b - a for a, b in itertools.pairwise(days_listed)]
            assert max(gaps) <= 8, (f, days_listed)
        # the turns are spread: no day lists more than the flows of one turn, after the first round
        assert max(len(d) for d in per_day[8:]) <= flows // 4

    def test_an_alarm_lists_every_flow_at_once(self) -> None:
        per_day = self.listings(0.25, 8, 20, alarm_on=13)
        assert sorted(per_day[12]) == list(range(8))

    def test_rounds(self) -> None:
        assert [Sample(s).rounds for s in (1.0, 0.5, 0.34, 0.25, 0.1)] == [1, 2, 3, 4, 10]

    def test_coverage_gives_turns_in_order_and_carries_the_alarm(self) -> None:
        cov = Coverage()
        assert [cov.sample(f, 0.5).slot for f in ("a", "b", "c", "a")] == [0, 1, 2, 0]
        assert cov.sample("a", 0.5).alarm_ms is None
        cov.missed_at(42, listed_since=0)
        assert cov.sample("b", 0.5) == Sample(0.5, 1, 42)

    def test_a_listing_the_alarm_caused_does_not_raise_it_again(self) -> None:
        cov = Coverage()
        cov.missed_at(42, listed_since=10)  # flow a's turn finds a lost approval
        cov.missed_at(50, listed_since=20)  # flow b lists because of the alarm, finds one too
        assert cov.sample("a", 0.5).alarm_ms == 42  # a is not listed a second time
        assert not verification_due(60, 42, 1000, cov.sample("a", 0.5))
        cov.missed_at(3000, listed_since=2000)  # a later turn's find is a new alarm
        assert cov.sample("a", 0.5).alarm_ms == 3000
