"""``KingdeeSink.write(lane, batch)`` → one resolution per bill, or back-pressure (STYLE §1).

The only place that decides what a Kingdee failure means for the bills: an existence check when a
bill may have been sent before, BatchSave, per-row outcomes by ``DIndex``, transient retries with
backoff and full jitter. When the retries run out the question is whose fault it is:

- ``pause_after_failures`` calls failed in a row (on any lane, with no BatchSave answered between),
  or no BatchSave was answered since this batch started failing → Kingdee as a whole is failing:
  :class:`KingdeeUnavailableError` hands the unresolved bills back, like quix-streams'
  ``SinkBackpressureError``, and the app pauses until a probe succeeds. This is checked at every
  failure, so an outage pauses the loader after a few calls, not after a retry budget;
- Kingdee refuses the loader itself (``KingdeeConfigError``: login, permission, licence): the
  same back-pressure at once, with no retries that could lock the account;
- otherwise other bills are saved meanwhile, and once the batch's budget is spent its bills are
  ``exhausted`` (dead letters: something about them keeps failing). With no other traffic a batch
  that alone keeps failing cannot be told from an outage: it is held and probed like one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from dingdee_common.contracts.v1 import BillReady
from dingdee_common.errors import BackpressureError, ErrorClass, TransientError
from dingdee_common.observability.logging import get_logger
from dingdee_common.outcomes import Outcome
from dingdee_common.retry import RetryExhaustedError, retry_transient
from dingdee_common.settings import RetrySettings
from dingdee_loader.batcher import Pending, Resolution
from dingdee_loader.kingdee.client import KingdeeConfigError, Lane
from dingdee_loader.kingdee.models import RowKind, RowResult
from dingdee_loader.metrics import LoaderMetrics

__all__ = ["BillStore", "KingdeeAvailability", "KingdeeSink", "KingdeeUnavailableError"]

log = get_logger(__name__)


class KingdeeUnavailableError(BackpressureError):
    """Kingdee as a whole is failing: ``done`` were resolved before, ``held`` go back to wait."""

    def __init__(self, cause: TransientError, done: list[Resolution], held: list[Pending]) -> None:
        refused = isinstance(cause, KingdeeConfigError)
        super().__init__(
            cause.message if refused else f"Kingdee unavailable: {cause.message}",
            code=cause.error_type,
            retry_after=cause.retry_after,
        )
        self.done = done
        self.held = held


class KingdeeAvailability:
    """What all lanes learnt about Kingdee: the last write it answered, the failures in a row since.

    Only answers that show bills can be written count as success: a BatchSave answer, or a probe
    after a pause. An existence query that works while every BatchSave fails is no evidence that
    the failing bills are to blame.
    """

    def __init__(self, pause_after_failures: int) -> None:
        self._limit = pause_after_failures
        self.failures_in_a_row = 0
        self.last_success = -math.inf

    def succeeded(self) -> None:
        self.failures_in_a_row = 0
        self.last_success = time.monotonic()

    def failed(self) -> None:
        self.failures_in_a_row += 1

    def succeeded_since(self, moment: float) -> bool:
        return self.last_success >= moment

    @property
    def failing(self) -> bool:
        return self.failures_in_a_row >= self._limit


@dataclass
class _Run:
    """One batch on its way through :meth:`KingdeeSink.write`."""

    todo: list[Pending]
    suspect: bool
    resolved: list[Resolution] = field(default_factory=list)
    started: float = 0.0  # when the current call began
    failing_since: float | None = None  # when the first failed call began


class BillStore(Protocol):
    """What the sink uses of :class:`~dingdee_loader.kingdee.client.KingdeeClient`."""

    async def existing(
        self, lane: Lane, form_id: str, number_field: str, numbers: list[str]
    ) -> dict[str, int]: ...

    async def batch_save(
        self, lane: Lane, form_id: str, options: dict[str, Any], models: list[dict[str, Any]]
    ) -> dict[int, RowResult]: ...


class KingdeeSink:
    """Writes one batch (same FormId and options) to Kingdee until every bill has an outcome."""

    def __init__(
        self,
        client: BillStore,
        retry: RetrySettings,
        metrics: LoaderMetrics,
        *,
        pause_after_failures: int = 3,
        precheck_always: bool = False,
        batch_count: int = 0,
    ) -> None:
        self._client = client
        self._retry = retry
        self._metrics = metrics
        self._always = precheck_always
        self._batch_count = batch_count
        self.availability = KingdeeAvailability(pause_after_failures)

    async def _precheck(
        self, lane: Lane, todo: list[Pending]
    ) -> tuple[list[Pending], list[Resolution]]:
        bill = todo[0].bill
        found = await self._client.existing(
            lane, bill.form_id, bill.number_field, [p.bill.bill_key for p in todo]
        )
        done = [
            Resolution(p, Outcome.ALREADY_EXISTS, found[p.bill.bill_key], p.bill.bill_key)
            for p in todo
            if p.bill.bill_key in found
        ]
        self._metrics.prechecks.labels("found" if done else "none").inc()
        return [p for p in todo if p.bill.bill_key not in found], done

    async def _save(
        self, lane: Lane, todo: list[Pending]
    ) -> tuple[list[Pending], list[Resolution]]:
        bill = todo[0].bill
        options: dict[str, Any] = dict(bill.save_options)
        if self._batch_count and len(todo) > self._batch_count:
            options.setdefault("BatchCount", self._batch_count)
        self._metrics.batch_size.observe(len(todo))
        for p in todo:
            p.attempts += 1
        rows = await self._client.batch_save(
            lane, bill.form_id, options, [p.bill.model for p in todo]
        )
        self.availability.succeeded()
        left: list[Pending] = []
        done: list[Resolution] = []
        for index, p in enumerate(todo):
            row = rows.get(index)
            if row is None:
                left.append(p)
            elif row.kind is RowKind.SAVED:
                done.append(
                    Resolution(p, Outcome.SAVED, row.kingdee_id, row.number or p.bill.bill_key)
                )
            elif row.kind is RowKind.EXISTS:
                done.append(
                    Resolution(p, Outcome.ALREADY_EXISTS, None, p.bill.bill_key, row.message)
                )
            else:
                done.append(
                    Resolution(
                        p,
                        Outcome.DEAD_LETTERED,
                        message=f"Kingdee rejected bill {p.bill.bill_key}: {row.message}",
                        error_class=ErrorClass.PERMANENT,
                        error_type="kingdee_row_rejected",
                    )
                )
        return left, done

    async def write(self, lane: Lane, batch: list[Pending]) -> list[Resolution]:
        """Save ``batch`` on ``lane``; returns one resolution per bill.

        Raises:
            KingdeeUnavailableError: Kingdee as a whole is failing; carries the bills resolved so
                far and the ones to hold (each marked suspect: a failed call may have committed).
        """
        run = _Run(list(batch), suspect=self._always or any(p.suspect for p in batch))

        def on_retry(exc: TransientError, attempt: int, delay: float) -> None:
            self._failed(run, exc, spent=False)
            self._log_retry(run.todo, attempt, delay, exc)

        try:
            await retry_transient(lambda: self._attempt(lane, run), self._retry, on_retry=on_retry)
        except RetryExhaustedError as exc:
            self._failed(run, exc.last, spent=True)
            run.resolved += [self._exhausted(p, exc.last, exc.attempts) for p in run.todo]
        return run.resolved

    async def _attempt(self, lane: Lane, run: _Run) -> None:
        """Precheck (when a call may have reached Kingdee) and save until every bill is resolved.

        Packages an all-or-nothing answer left unsaved are sent again at once, in the same attempt.
        """
        while run.todo:
            run.started = time.monotonic()
            if run.suspect:
                run.todo, done = await self._precheck(lane, run.todo)
                run.resolved += done
                if not run.todo:
                    return
            run.suspect = False
            run.todo, done = await self._save(lane, run.todo)
            run.resolved += done

    def _failed(self, run: _Run, exc: TransientError, *, spent: bool) -> None:
        """The loader's error → action map for a failed Kingdee call (DESIGN §4).

        - Kingdee refuses the loader (login, permission, licence) or fails as a whole:
          back-pressure, :class:`KingdeeUnavailableError` (hold the bills, pause, probe);
        - else, budget left: retry, after a precheck (the call may have reached Kingdee);
        - else, budget spent while other bills were saved: the rest is dead-lettered
          ``exhausted`` (:meth:`write`).

        A row Kingdee rejects for its data is dead-lettered ``permanent`` (:meth:`_save`), an
        undecodable record ``poison`` (the app); neither is a failed call.
        """
        self.availability.failed()
        run.suspect = True
        run.failing_since = run.started if run.failing_since is None else run.failing_since
        if isinstance(exc, KingdeeConfigError) or self._unavailable(run.failing_since, spent):
            for p in run.todo:
                p.suspect = True
            raise KingdeeUnavailableError(exc, run.resolved, run.todo) from exc

    def _unavailable(self, failing_since: float, spent: bool) -> bool:
        """Kingdee's fault: calls fail in a row everywhere, or no bill was saved since this batch
        started failing and its budget is spent (else a spent budget means ``exhausted``)."""
        if self.availability.failing:
            return True
        return spent and not self.availability.succeeded_since(failing_since)

    async def probe(self, lane: Lane, bill: BillReady) -> None:
        """One existence query for ``bill``: does Kingdee answer business calls again?

        Raises:
            TransientError: it does not (yet); KingdeeConfigError while it refuses the loader.
        """
        await self._client.existing(lane, bill.form_id, bill.number_field, [bill.bill_key])
        self.availability.succeeded()

    @staticmethod
    def _log_retry(todo: list[Pending], attempt: int, delay: float, exc: TransientError) -> None:
        log.info(
            "loader.batch.retrying",
            form_id=todo[0].bill.form_id,
            bills=len(todo),
            attempt=attempt,
            delay=round(delay, 3),
            error_type=exc.error_type,
            error=exc.message,
        )

    @staticmethod
    def _exhausted(p: Pending, exc: TransientError, attempts: int) -> Resolution:
        return Resolution(
            p,
            Outcome.DEAD_LETTERED,
            message=f"gave up after {attempts} attempts while other bills were saved: {exc}",
            error_class=ErrorClass.EXHAUSTED,
            error_type=exc.error_type,
        )
