"""A flow poller's fetching: ``get`` each instance, emit changed snapshots, dead-letter once.

This is the extractor's error → action map for a ``get`` (see :meth:`FlowFetching._fetch_one`).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from dingdee_common.contracts import EmittedInstance, OpenInstance
from dingdee_common.errors import ErrorClass, PermanentError, TransientError, classify
from dingdee_common.kafka.dlq import SourceRecord
from dingdee_common.observability.logging import get_logger
from dingdee_common.outcomes import Outcome
from dingdee_common.retry import RetryExhaustedError
from dingdee_extractor import planning
from dingdee_extractor.emitter import Trigger
from dingdee_extractor.fingerprint import fingerprint, is_terminal
from dingdee_extractor.listing import FlowListing
from dingdee_extractor.metrics import STAGE

__all__ = ["DETAIL_SOURCE", "FlowFetching", "create_time_ms"]

log = get_logger(__name__)

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


class FlowFetching(FlowListing):
    """The poller's ``get`` of instances and the emission of their changed snapshots."""

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
        await self._fetched(instance_id, instance, now, hint_ms, trigger, late_before)

    async def _fetched(
        self,
        instance_id: str,
        instance: dict[str, Any],
        now: int,
        hint_ms: int,
        trigger: Trigger,
        late_before: int | None,
    ) -> None:
        """A fetched snapshot: emit it if it changed; a terminal one is remembered as emitted,
        an open one is scheduled for its next re-check."""
        self._metrics.stage.records_in.labels(STAGE, self.source.flow).inc()
        fp = fingerprint(instance)
        created = create_time_ms(instance, self._tz, hint_ms)
        if late_before is not None and created < late_before and self._is_new(instance_id):
            trigger = self._found_late(instance_id, created)
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

    def _found_late(self, instance_id: str, created: int) -> Trigger:
        """A new id the windows covering its creation time missed: DingTalk listed it late."""
        self._metrics.swept.labels(self.source.flow).inc()
        log.warning(
            "extractor.sweep.found",
            flow=self.source.flow,
            approval_id=instance_id,
            create_time_ms=created,
        )
        return "sweep"

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
