"""The events-mode safety net: which creation times a Stream gap could have hidden (DESIGN §5).

While an app's Stream connection is up and every event is acknowledged, each approval's
``start`` event makes it known (an open instance, no call) and its ``finish`` event fetches it:
nothing needs listing. What can hide an approval is a *gap* — the connection down, an event that
failed (answered LATER), an extractor that was not running — and only for the creation times the
gap spans. :class:`Coverage` records the connected, fully acknowledged intervals of one app (on
the pollers' clock); the functions below turn them into the creation-time windows to list.

Every function here is pure (no I/O, no clock): the poller passes ``now``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "Coverage",
    "Interval",
    "Sample",
    "covered_creation",
    "listing_end",
    "merge",
    "prompt",
    "uncovered",
    "verification_due",
]

Interval = tuple[int, int]  # [start, end] in Unix ms, inclusive
KEEP_MS = 400 * 86_400_000


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, non-overlapping intervals covering the same times (touching ones joined)."""
    out: list[Interval] = []
    for lo, hi in sorted(i for i in intervals if i[0] <= i[1]):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def covered_creation(connected: Iterable[Interval], margin_ms: int) -> list[Interval]:
    """Creation times whose events were surely seen: each interval shrunk by ``margin_ms``.

    An approval created at ``c`` inside a connected interval ``[a, b]`` had its ``start`` event
    delivered and acknowledged before ``b`` if it was sent within ``margin_ms`` (event latency
    and the skew between DingTalk's ``createTime`` and our clock); near the edges it may not
    have been, so those creation times count as gap.
    """
    return merge((a + margin_ms, b - margin_ms) for a, b in connected)


def uncovered(covered: Iterable[Interval], lo: int, hi: int) -> list[Interval]:
    """The parts of ``[lo, hi]`` outside ``covered`` (the creation windows to list)."""
    out: list[Interval] = []
    cursor = lo
    for a, b in merge(covered):
        if b < cursor:
            continue
        if a > hi:
            break
        if a > cursor:
            out.append((cursor, min(a - 1, hi)))
        cursor = max(cursor, b + 1)
        if cursor > hi:
            break
    if cursor <= hi:
        out.append((cursor, hi))
    return out


def listing_end(
    end: int,
    now: int,
    *,
    connected_until: int | None,
    gap_start: int | None,
    gap_max_ms: int,
    margin_ms: int,
) -> int:
    """How far a cycle may account for creation times: up to ``end``, never into the unknown.

    Connected (``connected_until``: the open interval's end, held back by events in flight):
    up to where that interval's coverage ends — the rest is not a gap, just not yet settled.
    In a gap that began at ``gap_start``: up to the gap, which is listed once it closes (the
    reconnection's redelivery may still fill it), unless it has lasted ``gap_max_ms``; then,
    and when nothing was ever connected (``gap_start`` ``None``), up to ``end``: polling takes
    over.
    """
    if connected_until is not None:
        return min(end, connected_until - margin_ms)
    if gap_start is None or now - gap_start >= gap_max_ms:
        return end
    return min(end, gap_start - margin_ms - 1)


def prompt(gaps: Iterable[Interval], min_gap_ms: int, margin_ms: int) -> list[Interval]:
    """The gap windows worth a ``listids`` now: those of a gap longer than ``min_gap_ms``.

    A window is its gap widened by the margin on each side. Shorter gaps (a reconnection, a
    failed ack redelivered) are no riskier than connected time — DingTalk redelivers what was
    not acknowledged — so they wait for the flow's verification, which lists them anyway.
    """
    return [(lo, hi) for lo, hi in gaps if hi - lo + 1 > min_gap_ms + 2 * margin_ms]


@dataclass(frozen=True)
class Sample:
    """Which share of an app's flows a verification interval lists, and this flow's place.

    ``share`` 1 lists every flow every interval. Below 1 the flows take turns: flow ``slot``
    lists in the intervals ``k`` (``now // interval``) with ``(k - slot) % rounds == 0``, so
    every flow is still listed at least every ``rounds`` intervals. ``alarm_ms``: when a
    sampled listing last found an approval no event had reported (then every flow lists).
    """

    share: float = 1.0
    slot: int = 0
    alarm_ms: int | None = None

    @property
    def rounds(self) -> int:
        return max(1, math.ceil(1 / self.share - 1e-9))


def verification_due(now: int, last_ms: int, interval_ms: int, sample: Sample | None) -> bool:
    """Whether a flow verified last at ``last_ms`` lists its creation times since then now.

    Without sampling: once ``interval_ms`` passed. Sampled: in the flow's turn, or once
    ``rounds`` intervals passed whatever the turn (the 120-day window rule and the lookback
    bound it), or at once after another flow's sampled listing raised the alarm.
    """
    if sample is None or sample.rounds == 1:
        return now - last_ms >= interval_ms
    if sample.alarm_ms is not None and sample.alarm_ms > last_ms:
        return True
    elapsed = now - last_ms
    if elapsed < interval_ms:
        return False
    if elapsed >= sample.rounds * interval_ms:
        return True
    return (now // interval_ms - sample.slot) % sample.rounds == 0


class Coverage:
    """One app's connected, fully acknowledged intervals (``[start, end]`` on the poll clock).

    ``connected_at`` opens an interval; while it is open its end is "now", held back by the
    oldest event still being handled (its snapshot not yet acknowledged). ``failed_at`` (an event
    answered LATER) and ``disconnected_at`` close it. ``restored`` seeds intervals from
    checkpoints, so a restart's gap runs from the last recorded end to the new connection.
    """

    def __init__(self, intervals: Iterable[Interval] = ()) -> None:
        self._closed: list[Interval] = merge(intervals)
        self._open_since: int | None = None
        self._inflight: dict[int, int] = {}  # token -> received at
        self._next = 0
        self.gap_since: int | None = self._closed[-1][1] if self._closed else None
        self.closed_gaps: list[Interval] = []  # gaps that ended, in order (pollers read them)
        self._slots: dict[str, int] = {}  # flow -> its turn among the app's flows (sampling)
        self._alarm_ms: int | None = None

    def sample(self, flow: str, share: float) -> Sample:
        """``flow``'s place in the sampled verification (turns in order of first asking)."""
        slot = self._slots.setdefault(flow, len(self._slots))
        return Sample(share=share, slot=slot, alarm_ms=self._alarm_ms)

    def missed_at(self, now: int, listed_since: int) -> None:
        """A sampled verification (of creation times since ``listed_since``, the flow's last
        listing) found an approval that no event reported: list every flow.

        A listing the alarm itself caused (one raised after ``listed_since``) does not raise it
        again: every flow is already listing, and a second alarm would list those that just
        did once more.
        """
        if self._alarm_ms is None or self._alarm_ms <= listed_since:
            self._alarm_ms = now

    @property
    def connected(self) -> bool:
        return self._open_since is not None

    def restored(self, intervals: Iterable[Interval]) -> None:
        """Add intervals recorded before a restart (any flow's checkpoint of this app)."""
        self._closed = merge([*self._closed, *intervals])
        if not self.connected and self._closed:
            self.gap_since = max(self.gap_since or 0, self._closed[-1][1])

    def connected_at(self, now: int) -> None:
        if self._open_since is None:
            if self.gap_since is not None:
                self.closed_gaps.append((self.gap_since, now))
            self._open_since = now
            self.gap_since = None

    def disconnected_at(self, now: int) -> None:
        self._close(now)
        self.gap_since = self._closed[-1][1] if self._closed else now

    def failed_at(self, now: int) -> None:
        """An event could not be handled: the interval ends here and a new one starts."""
        if self._open_since is None:
            return
        self._close(now)
        self._open_since = now + 1

    def begin(self, now: int) -> int:
        """An event arrived; returns a token for :meth:`end` once its outcome is acknowledged."""
        self._next += 1
        self._inflight[self._next] = now
        return self._next

    def end(self, token: int) -> None:
        self._inflight.pop(token, None)

    def connected_until(self, now: int) -> int | None:
        """The open interval's end (``None`` when disconnected)."""
        return None if self._open_since is None else self._held(now)

    def _close(self, now: int) -> None:
        if self._open_since is not None:
            closed = merge([*self._closed, (self._open_since, self._held(now))])
            # nothing older than DingTalk's listing lookback (365 days) is ever planned again
            self._closed = [i for i in closed if i[1] >= now - KEEP_MS]
        self._open_since = None

    def _held(self, now: int) -> int:
        return min([now, *(t - 1 for t in self._inflight.values())])

    def intervals(self, now: int, since: int = 0) -> list[Interval]:
        """Every interval (the open one up to ``now``, held back by events in flight) ending at
        or after ``since``."""
        live = [] if self._open_since is None else [(self._open_since, self._held(now))]
        return [i for i in merge([*self._closed, *live]) if i[1] >= since]
