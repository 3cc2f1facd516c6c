"""One flow's polling: windows, paging, open-instance re-fetching, sweeps (DESIGN §5).

``listids`` filters on *creation* time, so a window once read never shows that an old instance
finished: unfinished instances stay in the checkpoint and are re-fetched on an adaptive schedule
(soon after creation, then backing off, capped) until they reach a terminal status. Terminal
instances already emitted are remembered while they can still be listed again (overlap, sweep),
so a re-listed id costs no ``get``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import orjson
from aiokafka.errors import KafkaError

from dingdee_common.contracts import Checkpoint, EmittedInstance, OpenInstance
from dingdee_common.errors import ErrorClass, PermanentError, TransientError, classify
from dingdee_common.kafka.dlq import DeadLetterPublisher, SourceRecord
from dingdee_common.observability.logging import get_logger
from dingdee_common.outcomes import Outcome
from dingdee_common.quota import CallKind, count_call, count_cycle
from dingdee_common.retry import RetryExhaustedError, retry_transient
from dingdee_common.settings import RetrySettings
from dingdee_extractor import planning
from dingdee_extractor.dingtalk.client import DingTalkClient, DingTalkUnavailableError, IdPage
from dingdee_extractor.emitter import Emitter, Trigger
from dingdee_extractor.fingerprint import fingerprint, is_terminal
from dingdee_extractor.flows import FlowSource
from dingdee_extractor.gapnet import (
    Coverage,
    covered_creation,
    listing_end,
    prompt,
    uncovered,
    verification_due,
)
from dingdee_extractor.metrics import STAGE, ExtractorMetrics
from dingdee_extractor.planning import DAY_MS, split_windows
from dingdee_extractor.settings import EventsSettings, PollSettings

__all__ = ["DAY_MS", "EventItem", "FlowPoller", "split_windows"]

log = get_logger(__name__)

MAX_PAGE = 20  # the largest listids page (contract §2.1)
DETAIL_SOURCE = "dingtalk.processinstance.get"  # not a Kafka topic: replay refuses it


def create_time_ms(instance: dict[str, Any], tz: ZoneInfo, fallback: int) -> int:
    """DingTalk renders times as CST wall-clock strings without a zone."""
    text = instance.get("create_time")
    if not isinstance(text, str):
        return fallback
    try:
        return int(
            datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=tz).timestamp() * 1000
        )
    except ValueError:
        return fallback


EventItem = tuple[Literal["start", "finish"], str, int]  # kind, instance id, creation (ms)


class FlowPoller:
    """Polls one flow; owns its checkpoint in memory and persists it after every acked step."""

    def __init__(
        self,
        source: FlowSource,
        checkpoint: Checkpoint | None,
        *,
        client: DingTalkClient,
        emitter: Emitter,
        save: Callable[[Checkpoint], Awaitable[None]],
        dlq: DeadLetterPublisher,
        metrics: ExtractorMetrics,
        poll: PollSettings,
        retry: RetrySettings,
        concurrency: int = 8,
        clock: Callable[[], int] | None = None,
        until_ms: int | None = None,
        on_window: Callable[[int, int, int], None] | None = None,
        check_code: Callable[[FlowSource], Awaitable[str | None]] | None = None,
        coverage: Coverage | None = None,
        events: EventsSettings | None = None,
    ) -> None:
        self.source = source
        self.cp = checkpoint or Checkpoint(flow=source.flow, watermark_ms=source.start_ms())
        self._saved = self.cp  # the last checkpoint the broker acknowledged
        self._open = dict(self.cp.open_instances)
        self._emitted = dict(self.cp.emitted)
        self._client = client
        self._emitter = emitter
        self._save = save
        self._dlq = dlq
        self._metrics = metrics
        self._poll = poll
        self._retry = retry
        self._clock = clock or (lambda: int(datetime.now(UTC).timestamp() * 1000))
        self._tz = ZoneInfo(source.timezone)
        self._concurrency = concurrency
        self._lock = asyncio.Lock()
        self._until_ms = until_ms
        self._on_window = on_window
        self._usage = self.cp.usage
        self._coverage = coverage  # events mode: list only what a Stream gap could have hidden
        self._events = events or EventsSettings()
        self._verify_now = False
        self._gaps_seen = 0  # of the coverage's closed gaps, those this flow has handled
        self._fallback_at = 0  # when a long open gap was last listed
        self.pace = 1.0  # poll interval / configured interval, set by the app's budget pacer
        self.calls = 0  # metered calls since this poller started (every attempt)
        self.terminals = 0
        self._check_code = check_code  # the doctor's form-schema check of the process_code
        self._code_checked_ms: int | None = None
        self.config_error: str | None = None  # a process_code DingTalk does not know

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

    @contextlib.contextmanager
    def _rewound_on_broker_failure(self) -> Iterator[None]:
        """On a Kafka error, forget everything since the last acknowledged checkpoint.

        Snapshots sent but not acknowledged may be lost, and an instance remembered as emitted
        would then never be fetched again: back at the checkpoint, the next cycle repeats the
        work (a snapshot may reach ``approvals.raw`` twice; the transformer's fingerprints drop
        the copy).
        """
        try:
            yield
        except KafkaError:
            self.cp = self._saved
            self._open = dict(self.cp.open_instances)
            self._emitted = dict(self.cp.emitted)
            raise

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
            self._coverage.missed_at(now)  # events were lost while connected: list every flow
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

    def _is_new(self, instance_id: str) -> bool:
        return instance_id not in self._emitted and instance_id not in self._open

    # ---- listing ---------------------------------------------------------------------------

    async def _list(self, lo: int, hi: int) -> list[str]:
        """Every id created in ``[lo, hi]``, paged to the end; halves a window over the cap.

        DingTalk pages through at most ``listing_cap`` ids of one query (§2.1 rule 3). What it
        does there is undocumented: it may stop listing (the silent cap) or refuse the page that
        reaches past it; either way the window is halved until each half fits.
        """
        cap = self._poll.listing_cap
        ids: list[str] = []
        cursor = 0
        refused = False
        while True:
            try:
                page: IdPage = await self._call(
                    "list", functools.partial(self._listids, lo, hi, cursor)
                )
            except PermanentError as exc:
                if cursor < cap - MAX_PAGE:
                    raise
                refused = True
                log.warning(
                    "extractor.listing.cap_refused",
                    flow=self.source.flow,
                    window_ms=[lo, hi],
                    cursor=cursor,
                    error=str(exc),
                )
                break
            ids.extend(page.ids)
            if page.next_cursor is None or page.next_cursor <= cursor:
                break
            cursor = page.next_cursor
        if (refused or len(ids) >= cap) and hi - lo > 1000:
            mid = lo + (hi - lo) // 2
            return [*await self._list(lo, mid), *await self._list(mid + 1, hi)]
        return list(dict.fromkeys(ids))

    async def _listids(self, lo: int, hi: int, cursor: int) -> IdPage:
        return await self._client.listids(self.source.app, self.source.process_code, lo, hi, cursor)

    async def _call(self, kind: CallKind, call: Callable[[], Awaitable[Any]]) -> Any:
        """``call`` with retries; every attempt is a metered call and is counted.

        Raises:
            DingTalkUnavailableError: a listing outlived its retry budget (DingTalk is down).
            RetryExhaustedError: a ``get`` did; :meth:`_fetch_one` decides whose fault it is.
        """

        async def counted() -> Any:
            self.calls += 1
            self._usage = count_call(self._usage, self.source.app, kind, self._clock())
            return await call()

        try:
            return await retry_transient(counted, self._retry)
        except RetryExhaustedError as exc:
            if kind == "get":
                raise
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: RetryExhaustedError) -> DingTalkUnavailableError:
        return DingTalkUnavailableError(
            f"DingTalk app {self.source.app!r} unavailable: {exc.last.message}",
            retry_after=exc.last.retry_after,
            code=exc.last.error_type,
        )

    async def _blame(self, exc: RetryExhaustedError, failed_at: float) -> None:
        """A ``get`` outlived its retries: return if the instance is at fault, else raise.

        DingTalk answered another call of the app after this one first failed, or answers a
        one-page listing of this flow now: the failure is this instance's. Otherwise DingTalk
        itself is unavailable, and :class:`DingTalkUnavailableError` stops the cycle before a
        failure is counted against any instance.
        """
        if self._client.answered_since(self.source.app, failed_at):
            return
        end = self._clock() - int(self._poll.settle_seconds * 1000)  # a legal, settled window
        try:
            await self._call("list", functools.partial(self._listids, end - 1000, end, 0))
        except PermanentError:
            return  # DingTalk answers (it refuses the listing): this is no outage
        if not self._client.answered_since(self.source.app, failed_at):
            raise self._unavailable(exc)

    # ---- fetching and emitting ---------------------------------------------------------------

    async def _fetch(
        self, ids: list[str], *, hint_ms: int, trigger: Trigger, late_before: int | None = None
    ) -> None:
        """``get`` each id (bounded concurrency), emit changed snapshots, wait for the acks.

        New ids created before ``late_before`` were missing from the windows that covered their
        creation time (DingTalk listed them late): they are counted and emitted as ``sweep``.
        """
        limit = asyncio.Semaphore(self._concurrency)
        failed: list[Exception] = []

        async def one(instance_id: str) -> None:
            async with limit:
                if failed:  # DingTalk or the broker is down: the rest waits for the next cycle
                    return
                try:
                    await self._fetch_one(instance_id, hint_ms, trigger, late_before)
                except Exception as exc:  # noqa: BLE001 - re-raised below, once all settled
                    failed.append(exc)

        started = time.monotonic()
        await asyncio.gather(*(one(i) for i in ids))
        await self._emitter.flush()
        if ids:  # a window with nothing to fetch is no pass
            self._metrics.stage.processing.labels(STAGE).observe(time.monotonic() - started)
        if failed:
            raise failed[0]

    async def _fetch_one(
        self, instance_id: str, hint_ms: int, trigger: Trigger, late_before: int | None = None
    ) -> None:
        """``get`` one instance and emit it if it changed: the extractor's error → action map.

        - transient: retried in place (:meth:`_call`, ``retry_transient``);
        - retries exhausted because DingTalk as a whole fails: back-pressure (:meth:`_blame`
          raises ``DingTalkUnavailableError``; the app waits, nothing is lost);
        - exhausted for this id only, or permanent: the id is kept and re-fetched later, and
          dead-lettered once with ``classify``'s class (:meth:`_detail_failed`).
        """
        now = self._clock()
        failed_at: list[float] = []  # when the first attempt failed

        async def get() -> dict[str, Any]:
            try:
                return await self._client.get(self.source.app, instance_id)
            except TransientError:
                failed_at.append(time.monotonic())
                raise

        try:
            instance = await self._call("get", get)
        except RetryExhaustedError as exc:
            await self._blame(exc, failed_at[0])
            await self._detail_failed(instance_id, hint_ms, now, exc)
            return
        except PermanentError as exc:
            await self._detail_failed(instance_id, hint_ms, now, exc)
            return
        self._metrics.stage.records_in.labels(STAGE, self.source.flow).inc()
        fp = fingerprint(instance)
        created = create_time_ms(instance, self._tz, hint_ms)
        if late_before is not None and created < late_before and self._is_new(instance_id):
            trigger = "sweep"
            self._metrics.swept.labels(self.source.flow).inc()
            log.warning(
                "extractor.sweep.found",
                flow=self.source.flow,
                approval_id=instance_id,
                create_time_ms=created,
            )
        if is_terminal(instance):
            self._open.pop(instance_id, None)
            previous = self._emitted.get(instance_id)
            if previous is None or previous.fingerprint != fp:
                await self._emit(instance_id, instance, fp, trigger)
                self.terminals += previous is None
            else:
                self._finished(Outcome.SKIPPED)
            self._emitted[instance_id] = EmittedInstance(fingerprint=fp, create_time_ms=created)
            return
        known = self._open.get(instance_id)
        if known is None or known.fingerprint != fp:
            await self._emit(instance_id, instance, fp, trigger)
        else:
            self._finished(Outcome.SKIPPED)
        checks = known.checks + 1 if known else 1
        self._open[instance_id] = OpenInstance(
            create_time_ms=created,
            fingerprint=fp,
            next_check_ms=planning.next_check_ms(self._poll, checks, now, self.pace),
            checks=checks,
        )

    def _defer_young(self, ids: list[str], lo: int, now: int) -> list[str]:
        """New ids to fetch now; ids from a window younger than the initial delay wait for it.

        An approval listed minutes after it was created is almost surely still running, so its
        first ``get`` is scheduled at ``window start + initial delay`` instead of spending a call
        on a snapshot that will change.
        """
        first_check = lo + planning.paced_ms(
            self._poll, self._poll.open_recheck_initial_seconds, self.pace
        )
        fresh = [i for i in ids if self._is_new(i)]
        if first_check <= now:
            return fresh
        for instance_id in fresh:
            self._open[instance_id] = OpenInstance(create_time_ms=lo, next_check_ms=first_check)
        return []

    async def _emit(
        self, instance_id: str, instance: dict[str, Any], fp: str, trigger: Trigger
    ) -> None:
        await self._emitter.emit(
            flow=self.source.flow,
            process_code=self.source.process_code,
            instance_id=instance_id,
            instance=instance,
            fingerprint=fp,
            trigger=trigger,
        )
        self._metrics.emitted.labels(self.source.flow, str(instance.get("status", ""))).inc()
        self._finished(Outcome.EMITTED)

    def _finished(self, outcome: Outcome) -> None:
        self._metrics.stage.records_out.labels(STAGE, self.source.flow, outcome.value).inc()

    async def _detail_failed(
        self, instance_id: str, hint_ms: int, now: int, exc: TransientError | PermanentError
    ) -> None:
        """Keep the id to retry later (nothing is lost); dead-letter it once for visibility."""
        known = self._open.get(instance_id)
        failures = (known.failures if known else 0) + 1
        checks = known.checks if known else 0
        self._open[instance_id] = OpenInstance(
            create_time_ms=known.create_time_ms if known else hint_ms,
            fingerprint=known.fingerprint if known else None,
            next_check_ms=now + int(self._poll.open_recheck_initial_seconds * 1000) * failures,
            checks=checks,
            failures=failures,
        )
        log.warning(
            "extractor.detail.failed",
            flow=self.source.flow,
            approval_id=instance_id,
            failures=failures,
            error=str(exc),
        )
        if failures == self._poll.detail_failures_before_dlq:
            await self._dead_letter(instance_id, failures, exc)

    async def _dead_letter(
        self, instance_id: str, failures: int, exc: TransientError | PermanentError
    ) -> None:
        value = orjson.dumps(
            {
                "flow": self.source.flow,
                "app": self.source.app,
                "process_code": self.source.process_code,
                "process_instance_id": instance_id,
            }
        )
        record = SourceRecord(DETAIL_SOURCE, -1, -1, instance_id.encode(), value)
        error_class = classify(exc).error_class or ErrorClass.EXHAUSTED
        await self._dlq.publish(
            record,
            error_class=error_class,
            error_type=exc.error_type,
            message=(
                f"flow {self.source.flow}: DingTalk get of approval {instance_id} failed "
                f"{failures} times ({exc}); the extractor keeps retrying it on its schedule"
            ),
            attempts=failures,
        )
        self._metrics.stage.dead_letters.labels(STAGE, self.source.flow, error_class.value).inc()
        self._finished(Outcome.DEAD_LETTERED)

    # ---- checkpointing -----------------------------------------------------------------------

    def _prune(self, now: int) -> None:
        """Forget emitted instances no window or sweep will list again."""
        p = self._poll
        next_sweep_from = max(now - int(p.sweep_lookback_days * DAY_MS), self.cp.swept_until_ms)
        keep_after = (
            min(self.cp.watermark_ms - int(p.overlap_seconds * 1000), next_sweep_from) - DAY_MS
        )
        self._emitted = {k: v for k, v in self._emitted.items() if v.create_time_ms >= keep_after}

    async def _checkpoint(self, *, watermark: int) -> None:
        """Persist state; only called after every record it covers was acked."""
        self.cp = self.cp.model_copy(
            update={
                "watermark_ms": watermark,
                "open_instances": dict(self._open),
                "emitted": dict(self._emitted),
                "usage": self._usage,
                "covered": self._covered(),
                "last_cycle_at": datetime.now(UTC),
            }
        )
        await self._save(self.cp)
        self._saved = self.cp

    def _covered(self) -> list[tuple[int, int]]:
        """The app's connected intervals still relevant to this flow (kept across restarts)."""
        if self._coverage is None:
            return []
        since = self.cp.watermark_ms - int(self._events.gap_margin_seconds * 1000) - DAY_MS
        return self._coverage.intervals(self._clock(), since=since)

    def _observe(self, now: int) -> None:
        flow = self.source.flow
        self._metrics.open_instances.labels(flow).set(len(self._open))
        self._metrics.freshness.labels(flow).set(max(0.0, (now - self.cp.watermark_ms) / 1000))
        self._metrics.last_poll.labels(flow).set(now / 1000)
        if self.terminals:
            self._metrics.calls_per_terminal.labels(flow).set(self.calls / self.terminals)
