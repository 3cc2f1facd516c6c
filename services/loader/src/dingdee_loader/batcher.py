"""Micro-batches per FormId and the write of one batch to Kingdee (STYLE §1: the sink contract).

``Batches.add`` accumulates bills per (FormId, number field, save options); ``Batches.due`` hands
out batches that are full or lingered long enough. ``BillWriter.write`` is the only place that talks
to Kingdee: existence check when a bill may have been sent before, BatchSave, per-row outcomes by
``DIndex``, transient retries with backoff and jitter, and ``exhausted`` once the budget is spent.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from opentelemetry.context import Context

from dingdee_common.contracts.v1 import BillReady
from dingdee_common.errors import ErrorClass, TransientError
from dingdee_common.kafka.dlq import SourceRecord
from dingdee_common.observability.logging import get_logger
from dingdee_common.retry import backoff_delay
from dingdee_common.settings import RetrySettings
from dingdee_loader.kingdee.client import KingdeeClient, Lane
from dingdee_loader.kingdee.models import RowKind
from dingdee_loader.metrics import LoaderMetrics

__all__ = ["Batches", "BillWriter", "OffsetTracker", "Pending", "Resolution"]

log = get_logger(__name__)


@dataclass(eq=False)
class Pending:
    """A consumed bill waiting for its Kingdee outcome."""

    source: SourceRecord
    bill: BillReady
    suspect: bool
    context: Context | None = None
    attempts: int = 0
    consumed_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class Resolution:
    """The final outcome of one bill: saved, already_exists, or a dead letter."""

    pending: Pending
    outcome: str  # "saved" | "already_exists" | "dead_letter"
    kingdee_id: int | None = None
    number: str | None = None
    message: str | None = None
    error_class: ErrorClass | None = None
    error_type: str | None = None


class OffsetTracker:
    """Offsets of one partition in consumption order; commit point = first unresolved offset."""

    def __init__(self) -> None:
        self._order: deque[int] = deque()
        self._resolved: set[int] = set()
        self._seen: set[int] = set()

    def add(self, offset: int) -> bool:
        """Track ``offset``; False if it is already tracked (a re-fetch after a seek)."""
        if offset in self._seen:
            return False
        self._order.append(offset)
        self._seen.add(offset)
        return True

    def resolve(self, offset: int) -> None:
        self._resolved.add(offset)

    def committable(self) -> int | None:
        """The offset to commit (next to consume), advanced past every resolved prefix."""
        last: int | None = None
        while self._order and self._order[0] in self._resolved:
            last = self._order.popleft()
            self._resolved.discard(last)
            self._seen.discard(last)
        return None if last is None else last + 1

    @property
    def unresolved(self) -> int:
        return len(self._order) - len(self._resolved)


BatchKey = tuple[str, str, str]


class Batches:
    """Bills grouped per (FormId, number field, save options), in arrival order."""

    def __init__(self, max_records: int, linger: float) -> None:
        self._max = max_records
        self._linger = linger
        self._open: dict[BatchKey, tuple[float, list[Pending]]] = {}

    @staticmethod
    def key(bill: BillReady) -> BatchKey:
        options = orjson.dumps(bill.save_options, option=orjson.OPT_SORT_KEYS).decode()
        return (bill.form_id, bill.number_field, options)

    def add(self, pending: Pending) -> None:
        key = self.key(pending.bill)
        _, items = self._open.setdefault(key, (time.monotonic(), []))
        items.append(pending)

    def due(self, *, flush: bool = False) -> list[list[Pending]]:
        """Batches to write now: full ones (split at the size), lingered ones, or all on flush."""
        out: list[list[Pending]] = []
        now = time.monotonic()
        for key in list(self._open):
            started, items = self._open[key]
            while len(items) >= self._max:
                out.append(items[: self._max])
                items = items[self._max :]
            if items and (flush or now - started >= self._linger):
                out.append(items)
                items = []
            if items:
                self._open[key] = (started, items)
            else:
                del self._open[key]
        return out

    def __len__(self) -> int:
        return sum(len(items) for _, items in self._open.values())


class BillWriter:
    """Writes one batch (same FormId and options) to Kingdee until every bill has an outcome."""

    def __init__(
        self,
        client: KingdeeClient,
        retry: RetrySettings,
        metrics: LoaderMetrics,
        *,
        precheck_always: bool = False,
        batch_count: int = 0,
    ) -> None:
        self._client = client
        self._retry = retry
        self._metrics = metrics
        self._always = precheck_always
        self._batch_count = batch_count

    async def _precheck(
        self, lane: Lane, todo: list[Pending]
    ) -> tuple[list[Pending], list[Resolution]]:
        bill = todo[0].bill
        found = await self._client.existing(
            lane, bill.form_id, bill.number_field, [p.bill.bill_key for p in todo]
        )
        done = [
            Resolution(p, "already_exists", found[p.bill.bill_key], p.bill.bill_key)
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
        left: list[Pending] = []
        done: list[Resolution] = []
        for index, p in enumerate(todo):
            row = rows.get(index)
            if row is None:
                left.append(p)
            elif row.kind is RowKind.SAVED:
                done.append(Resolution(p, "saved", row.kingdee_id, row.number or p.bill.bill_key))
            elif row.kind is RowKind.EXISTS:
                done.append(Resolution(p, "already_exists", None, p.bill.bill_key, row.message))
            else:
                done.append(
                    Resolution(
                        p,
                        "dead_letter",
                        message=f"Kingdee rejected bill {p.bill.bill_key}: {row.message}",
                        error_class=ErrorClass.PERMANENT,
                        error_type="kingdee_row_rejected",
                    )
                )
        return left, done

    async def write(self, lane: Lane, batch: list[Pending]) -> list[Resolution]:
        """Save ``batch`` on ``lane``; returns one resolution per bill.

        Raises:
            FatalError: Kingdee rejected the credentials (the service must stop).
        """
        todo = list(batch)
        resolved: list[Resolution] = []
        suspect = self._always or any(p.suspect for p in batch)
        deadline = time.monotonic() + self._retry.deadline_seconds
        attempt = 0
        while todo:
            attempt += 1
            try:
                if suspect:
                    todo, done = await self._precheck(lane, todo)
                    resolved += done
                    if not todo:
                        break
                suspect = False
                todo, done = await self._save(lane, todo)
                resolved += done
            except TransientError as exc:
                # the call may have reached Kingdee: ask before anything is sent again
                suspect = True
                delay = max(backoff_delay(attempt, self._retry), exc.retry_after or 0.0)
                if attempt >= self._retry.max_attempts or time.monotonic() + delay > deadline:
                    resolved += [self._exhausted(p, exc, attempt) for p in todo]
                    break
                log.info(
                    "loader.batch.retrying",
                    form_id=todo[0].bill.form_id,
                    bills=len(todo),
                    attempt=attempt,
                    delay=round(delay, 3),
                    error_type=exc.error_type,
                    error=exc.message,
                )
                await asyncio.sleep(delay)
        return resolved

    @staticmethod
    def _exhausted(p: Pending, exc: TransientError, attempts: int) -> Resolution:
        return Resolution(
            p,
            "dead_letter",
            message=f"gave up after {attempts} attempts: {exc}",
            error_class=ErrorClass.EXHAUSTED,
            error_type=exc.error_type,
        )
