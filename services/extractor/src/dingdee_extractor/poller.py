"""One flow's polling: windows, paging, open-instance re-fetching, sweeps (DESIGN §5).

``listids`` filters on *creation* time, so a window once read never shows that an old instance
finished: unfinished instances stay in the checkpoint and are re-fetched on an adaptive schedule
(soon after creation, then backing off, capped) until they reach a terminal status. Terminal
instances already emitted are remembered while they can still be listed again (overlap, sweep),
so a re-listed id costs no ``get``.
"""

from __future__ import annotations

from typing import Literal

from dingdee_common.contracts import OpenInstance
from dingdee_common.observability.logging import get_logger
from dingdee_common.quota import count_cycle
from dingdee_extractor import planning
from dingdee_extractor.fetching import FlowFetching
from dingdee_extractor.gapnet import (
    covered_creation,
    listing_end,
    prompt,
    uncovered,
    verification_due,
)
from dingdee_extractor.planning import DAY_MS, split_windows

__all__ = ["DAY_MS", "EventItem", "FlowPoller", "split_windows"]

log = get_logger(__name__)

EventItem = tuple[Literal["start", "finish"], str, int]  # kind, instance id, creation (ms)


class FlowPoller(FlowFetching):
    """Polls one flow: the cycle over windows, re-checks and sweeps (layers: ``flowstate``)."""

    # ---- the cycle ---------------------------------------------------------------------------

    async def on_event(self, instance_id: str) -> bool:
        """An approval event: fetch the instance now; returns once its snapshot is acked.

        A terminal instance already emitted cannot change any more (a modification or
        revocation is a new, linked instance), so a repeated event for it costs no ``get``;
        returns whether the instance was fetched.
        """
        return (await self.on_events([("finish", instance_id, 0)]))[0]

    async def on_start(self, instance_id: str, create_ms: int) -> bool:
        """A ``start`` event: the instance is known (open) without any call; returns if new.

        Its ``finish`` event fetches it; if that event is lost, the open instance's re-check
        does. Creation times covered by events therefore never need a ``listids`` (gapnet).
        """
        return (await self.on_events([("start", instance_id, create_ms)]))[0]

    async def on_events(self, events: list[EventItem]) -> list[bool]:
        """A batch of events (:class:`~dingdee_extractor.batching.Batcher`) under one lock:
        starts become open instances, finishes are fetched concurrently, one checkpoint after
        every snapshot was acked. Per event: whether it was new (see the two methods above)."""
        async with self._lock:
            new: list[bool] = []
            fetch: list[str] = []
            for kind, instance_id, create_ms in events:
                if kind == "finish":
                    new.append(instance_id not in self._emitted and instance_id not in fetch)
                    fetch += [instance_id] if new[-1] else []
                    continue
                new.append(self._is_new(instance_id))
                if new[-1]:
                    first = create_ms + planning.paced_ms(
                        self._poll, self._poll.open_recheck_initial_seconds, self.pace
                    )
                    self._open[instance_id] = OpenInstance(
                        create_time_ms=create_ms, next_check_ms=first
                    )
            if any(new):
                with self._rewound_on_broker_failure():
                    await self._fetch(fetch, hint_ms=self._clock(), trigger="event")
                    await self._checkpoint(watermark=self.cp.watermark_ms)
            return new

    async def cycle(self) -> None:
        """Read new windows, re-fetch due open instances, sweep when due; checkpoint each step.

        Raises:
            DingTalkUnavailableError: DingTalk stopped answering; what was acknowledged before
                stays (the next cycle resumes from there).
            KafkaError: the broker did not acknowledge; the poller is back at its last
                acknowledged checkpoint, as after a restart.
        """
        async with self._lock:
            with self._rewound_on_broker_failure():
                await self._cycle()

    async def _cycle(self) -> None:
        now = self._clock()
        p = self._poll
        plan = planning.cycle_range(
            p,
            now=now,
            watermark=self.cp.watermark_ms,
            flow_start=self.source.start_ms(),
            swept_until=self.cp.swept_until_ms,
            until_ms=self._until_ms,
        )
        start, fresh_from, end = plan.start, plan.fresh_from, plan.end
        listed = 0
        self._verify_now = False
        windows, end = self._planned(start, end, now)
        for lo, hi in windows:
            ids = await self._list(lo, hi)
            listed += len(ids)
            new = self._defer_young(ids, lo, now)
            await self._fetch(new, hint_ms=lo, trigger="poll", late_before=fresh_from)
            self._listed_settled(lo, hi, now)
            await self._checkpoint(watermark=max(self.cp.watermark_ms, hi + 1))
            if self._on_window is not None:
                self._on_window(lo, hi, len(ids))
        await self._check_empty(listed, now)
        due = planning.due(self._open, now)
        if due:
            await self._fetch(due, hint_ms=now, trigger="poll")
        if self._verify_now:  # the gap's listing was this flow's verification
            self.cp = self.cp.model_copy(update={"last_sweep_ms": now})
        if self._long_gap_closed():
            self._recheck_open(now)
        cov, share = self._coverage, self._events.verify_sample
        sample = cov.sample(self.source.flow, share) if cov is not None else None
        interval = int(p.sweep_interval_seconds * 1000)
        sweep_due = verification_due(now, self.cp.last_sweep_ms, interval, sample)
        if self._until_ms is None and sweep_due:
            await self.sweep(now)
        self._prune(now)
        self._usage = count_cycle(self._usage, self.source.app, now)
        await self._checkpoint(watermark=max(self.cp.watermark_ms, end + 1))
        self._observe(now)

    async def _check_empty(self, listed: int, now: int) -> None:
        """A flow that never listed anything may have a process_code DingTalk does not know.

        DingTalk answers an empty list for an unknown code, forever and without an error. So
        while a flow has listed nothing and holds no instance, the form-schema API (the doctor's
        check) is asked at most once per ``code_check_interval_seconds`` whether it knows the
        code; its refusal becomes :attr:`config_error` (``/readyz``) and an error log line.
        """
        if listed or self._open or self._emitted:
            self.config_error = None
            return
        interval_ms = int(self._poll.code_check_interval_seconds * 1000)
        if self._check_code is None or (
            self._code_checked_ms is not None and now - self._code_checked_ms < interval_ms
        ):
            return
        self._code_checked_ms = now
        problem = await self._check_code(self.source)
        code = self.source.process_code
        self.config_error = (
            None
            if problem is None
            else f"flow {self.source.flow!r} lists nothing for process_code {code}: {problem}"
        )
        if problem is not None:
            log.error(
                "extractor.flow.unknown_process_code",
                flow=self.source.flow,
                process_code=code,
                error=problem,
            )

    def _planned(self, start: int, end: int, now: int) -> tuple[list[tuple[int, int]], int]:
        """The creation windows this cycle lists, and the end of the times it accounts for.

        Polling lists everything new. With events (a :class:`Coverage`), only the parts of
        ``[watermark, end]`` that no connected, acknowledged interval covers, and not into a
        gap still open (see :func:`~dingdee_extractor.gapnet.listing_end`).
        """
        width = int(self._poll.window_max_days * DAY_MS)
        if self._coverage is None:
            return list(split_windows(start, end, width)), end
        ev = self._events
        margin = int(ev.gap_margin_seconds * 1000)
        gap_max = int(ev.gap_max_seconds * 1000)
        connected_until = self._coverage.connected_until(now)
        gap_start = self._coverage.gap_since
        if connected_until is None and gap_start is not None and now - gap_start >= gap_max:
            # a long gap still open: poll, but at most once per gap_max (not every tick)
            if now - self._fallback_at < gap_max:
                return [], self.cp.watermark_ms - 1
            self._fallback_at = now
        end = listing_end(
            end,
            now,
            connected_until=connected_until,
            gap_start=gap_start,
            gap_max_ms=gap_max,
            margin_ms=margin,
        )
        start = max(start, self.cp.watermark_ms)  # events mode: no overlap, no ride-along
        covered = covered_creation(self._coverage.intervals(now), margin)
        gaps = prompt(uncovered(covered, start, end), int(ev.gap_list_min_seconds * 1000), margin)
        if not gaps:
            return [], end
        # a gap brings the verification forward: one listing from where the last one ended
        # through the gap costs what listing the gap alone would (a page holds 20 ids)
        self._verify_now = True
        lo = min(self._sweep_range(now)[0], gaps[0][0])
        return list(split_windows(lo, gaps[-1][1], width)), end

    def _long_gap_closed(self) -> bool:
        """Whether a gap longer than the listing minimum closed since the last cycle."""
        if self._coverage is None:
            return False
        closed = self._coverage.closed_gaps[self._gaps_seen :]
        self._gaps_seen = len(self._coverage.closed_gaps)
        least = int(self._events.gap_list_min_seconds * 1000)
        return any(hi - lo >= least for lo, hi in closed)

    def _recheck_open(self, now: int) -> None:
        """After a long gap every open instance is due: its finish event may have been lost."""
        for instance_id, known in self._open.items():
            if known.next_check_ms > now:
                self._open[instance_id] = known.model_copy(update={"next_check_ms": now})

    def _listed_settled(self, lo: int, hi: int, now: int) -> None:
        """Creation times listed at least ``sweep_delay`` after they passed need no sweep."""
        swept = self.cp.swept_until_ms
        settled = planning.settled_until(lo, hi, now, swept, self._poll.sweep_delay_seconds)
        if settled != swept:
            self.cp = self.cp.model_copy(update={"swept_until_ms": settled})

    async def sweep(self, now: int) -> None:
        """Compensation sweep: re-list settled creation times once, fetch any id not known yet.

        DingTalk's listing can show an instance later than its creation time says, after the
        window holding it was read. Each sweep re-lists the creation times between the last
        sweep's end and ``now - sweep_delay`` (never older than the lookback), so every moment
        is listed twice in all, and a sweep costs about what the first listing did.
        """
        p = self._poll
        lo, hi = self._sweep_range(now)
        missed: list[str] = []
        for w_lo, w_hi in split_windows(lo, hi, int(p.window_max_days * DAY_MS)):
            missed += [i for i in await self._list(w_lo, w_hi) if self._is_new(i)]
        if missed and self._coverage is not None and self._events.verify_sample < 1:
            # events were lost while connected: list every flow
            self._coverage.missed_at(now, listed_since=self.cp.last_sweep_ms)
        await self._fetch(missed, hint_ms=lo, trigger="sweep", late_before=hi + 1)
        swept_until = max(self.cp.swept_until_ms, hi + 1)
        self.cp = self.cp.model_copy(update={"last_sweep_ms": now, "swept_until_ms": swept_until})

    def _sweep_range(self, now: int) -> tuple[int, int]:
        return planning.sweep_range(
            self._poll,
            now=now,
            watermark=self.cp.watermark_ms,
            flow_start=self.source.start_ms(),
            swept_until=self.cp.swept_until_ms,
        )
