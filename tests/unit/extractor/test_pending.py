"""``PendingFollowups``: the oldest unhandled record of the batch in hand, its age on the gauge
and, past ``stuck_seconds``, a ``/readyz`` reason (issue #18)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge

from dingdee_extractor.pending import SUBJECT, PendingFollowups
from dingdee_extractor.settings import FollowupSettings


@dataclass
class Rec:
    offset: int
    timestamp: int


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def pending(clock: Clock) -> tuple[PendingFollowups, Gauge, dict[str, str | None]]:
    gauge = Gauge("oldest", "", registry=CollectorRegistry())
    said: dict[str, str | None] = {}

    def behind(subject: str, why: str | None) -> None:
        said[subject] = why

    settings = FollowupSettings(stuck_seconds=60)
    return PendingFollowups(settings, gauge, behind, clock), gauge, said


def test_the_oldest_unhandled_record_ages_and_readiness_follows() -> None:
    clock = Clock(1_000.0)
    p, gauge, said = pending(clock)
    assert p.check() == 0.0 and said[SUBJECT] is None
    # two partitions: the second record is older than the first
    p.batch([("r", Rec(5, 990_000)), ("r", Rec(9, 980_000)), ("q", Rec(1, 995_000))])
    p.taking(0)
    assert p.check() == 20.0  # the older record behind it is pending too
    p.taking(2)
    assert p.check() == 5.0
    clock.now = 1_070.0  # stuck on that record for over a minute
    assert p.check() == 75.0 and gauge._value.get() == 75.0
    reason = said[SUBJECT]
    assert reason is not None and "q offset 1" in reason and "75s" in reason
    assert "DINGDEE_FOLLOWUPS__STUCK_SECONDS=60" in reason and "nothing is dead-lettered" in reason
    p.done()
    assert said[SUBJECT] is None and gauge._value.get() == 0.0


def test_a_record_without_a_time_counts_from_the_fetch() -> None:
    clock = Clock(500.0)
    p, _, _ = pending(clock)
    p.batch([("r", Rec(0, -1))])
    clock.now = 530.0
    assert p.check() == 30.0
