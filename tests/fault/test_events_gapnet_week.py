"""A simulated week of events over 30 flows with lost events, disconnections, a listener outage
and a restart ends with the exact set (issue #19; the gap-aware safety net, DESIGN §5).

The week runs on the sandbox clock (``bench/gapweek.py``, ``bench_gapnet``'s simulation, a real
broker and the sandbox over real HTTP and WebSocket), with a three-day verification interval so
the quiet days after it stay short; ``make bench`` runs it with the defaults and prints the same
figures.
"""

from __future__ import annotations

import pytest
from bench.gapweek import simulate

from dingdee_common.settings import KafkaSettings

pytestmark = pytest.mark.integration


async def test_a_week_of_lost_events_and_gaps_over_30_flows_ends_with_the_exact_set(
    kafka: KafkaSettings,
) -> None:
    week = await simulate(kafka, verify_days=3, days=7)
    print(
        f"gapnet week: {week.per_approval:.3f} calls/approval ({week.gets} get + {week.lists} "
        f"listids for {week.approvals} approvals), {len(week.lost_lateness_h)} lost finish "
        f"events, latest arrival {max(week.lost_lateness_h, default=0):.0f} h after finishing, "
        f"{week.wall_s:.1f}s"
    )
    assert week.approvals > 150
    assert not week.missing and not week.extra, (week.missing, week.extra)
    assert week.exact
    assert week.lost_lateness_h, "the week must lose finish events for this test to mean much"
    # every approval whose finish event was lost arrived within the verification interval
    assert max(week.lost_lateness_h) <= 3 * 24
    # and one created and finished inside a long gap (a 10-h listener outage, a restart) at the
    # first tick after the gap closed, not at the next verification
    assert week.gap_lateness_h, "the gaps must hide approvals for this test to mean much"
    assert max(week.gap_lateness_h) <= 10


async def test_a_sampled_verification_ends_with_the_exact_set_within_its_turns(
    kafka: KafkaSettings,
) -> None:
    """Half the flows each 3-day interval (``EVENTS__VERIFY_SAMPLE=0.5``): still the exact set,
    and every approval whose events were lost within two intervals (DESIGN §5 point 4)."""
    week = await simulate(kafka, verify_days=3, days=7, long_gaps=False, verify_sample=0.5)
    print(
        f"sampled gapnet week: {week.per_approval:.3f} calls/approval ({week.gets} get + "
        f"{week.lists} listids for {week.approvals} approvals), latest lost arrival "
        f"{max(week.lost_lateness_h, default=0):.0f} h after finishing, {week.wall_s:.1f}s"
    )
    assert week.approvals > 150
    assert week.exact, (week.missing, week.extra)
    assert week.lost_lateness_h
    assert max(week.lost_lateness_h) <= 2 * 3 * 24
