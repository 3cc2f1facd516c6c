"""The quota model's polling ``get`` per approval follow the extractor's own re-check rules.

:mod:`dingdee_common.schedule` is the one place the figure comes from (``dingdee quota plan``,
the doctor); these tests hold it to the extractor: its defaults, and its re-check arithmetic
(``planning.next_check_ms``, paced by a budget as ``planning.paced_ms`` paces it).
"""

from __future__ import annotations

import itertools
import math

import pytest

from dingdee_common.schedule import DEFAULT, Schedule, _one, gets_per_approval, paced
from dingdee_extractor import planning
from dingdee_extractor.settings import PollSettings

H = 3600.0


def test_the_model_default_is_the_extractors_default() -> None:
    poll = PollSettings()
    assert (
        Schedule(
            poll.interval_seconds,
            poll.open_recheck_initial_seconds,
            poll.open_recheck_factor,
            poll.open_recheck_max_seconds,
        )
        == DEFAULT
    )


def extractor_gets(poll: PollSettings, pace: float, duration_h: float, phase: float) -> int:
    """``get`` calls of one approval as the extractor schedules them, created at 0 and listed
    by the cycle at ``phase`` of the (paced) interval: its first ``get`` waits for the window's
    paced first re-check (``_defer_young``), each later one for ``next_check_ms``; a due
    re-check runs at the next cycle."""
    interval = int(poll.interval_seconds * pace * 1000)
    first_cycle = int(phase * interval)
    finish = int(duration_h * H * 1000)
    due = first_cycle - interval + planning.paced_ms(poll, poll.open_recheck_initial_seconds, pace)
    checks = 0
    while True:
        at = first_cycle + max(0, math.ceil((due - first_cycle) / interval)) * interval
        checks += 1
        if finish <= at:
            return checks
        due = planning.next_check_ms(poll, checks, at, pace)


@pytest.mark.parametrize(
    ("poll", "pace"),
    [
        (PollSettings(), 1.0),
        (PollSettings(interval_seconds=7200), 1.0),
        (PollSettings(interval_seconds=1800, open_recheck_initial_seconds=4 * H), 1.0),
        (PollSettings(), 840.0),  # a budget stretching 30-s cycles to 7 h
        (PollSettings(interval_seconds=600, open_recheck_factor=1.5), 12.0),
    ],
)
def test_gets_per_approval_follow_the_extractors_rechecks(poll: PollSettings, pace: float) -> None:
    s = Schedule(
        poll.interval_seconds,
        poll.open_recheck_initial_seconds,
        poll.open_recheck_factor,
        poll.open_recheck_max_seconds,
    )
    model = paced(s, pace, max(poll.open_recheck_max_seconds, poll.budget_max_interval_seconds))
    for duration, phase in itertools.product((0.01, 0.5, 3.0, 6.0, 30.0, 144.0), (0.125, 0.875)):
        assert _one(model, duration, phase)[0] == extractor_gets(poll, pace, duration, phase), (
            duration,
            phase,
        )


def test_the_default_schedule_costs_about_ten_gets_an_approval_and_longer_cycles_fewer() -> None:
    # re-checks after 1, 2, 4 … min up to 6 h until an approval of median 6 h finishes
    at_30_s = gets_per_approval(DEFAULT)
    assert 9 < at_30_s < 12
    two_hours = gets_per_approval(Schedule(2 * H, 60.0, 2.0, 6 * H))
    assert 1 < two_hours < at_30_s
