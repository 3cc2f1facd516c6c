"""Bills between the consumer and Kingdee: micro-batches per FormId, outcomes, offsets.

``Batches.add`` accumulates bills per (FormId, number field, save options); ``Batches.due`` hands
out batches that are full or lingered long enough; ``Batches.hold`` takes back the bills of a batch
Kingdee could not take (back-pressure) until it is written again. ``OffsetTracker`` gives each
partition's commit point. Writing a batch is ``sink.KingdeeSink``.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from opentelemetry.context import Context

from dingdee_common import codec
from dingdee_common.contracts.v1 import BillReady
from dingdee_common.errors import ErrorClass
from dingdee_common.kafka.dlq import SourceRecord
from dingdee_common.outcomes import Outcome

__all__ = ["Batches", "OffsetTracker", "Pending", "Resolution"]


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
    outcome: Outcome  # SAVED, ALREADY_EXISTS or DEAD_LETTERED
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
        # save options decode like the rest of the bill: a fractional value is a Decimal
        options = codec.dumps(bill.save_options, sort_keys=True).decode()
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

    def hold(self, held: list[Pending]) -> None:
        """Take back bills Kingdee could not take; they go out again with the next ``due``."""
        for pending in held:
            self.add(pending)

    def drop(self, partitions: set[tuple[str, int]]) -> list[Pending]:
        """Forget the bills of revoked ``partitions`` (their new owner reads them again)."""
        dropped: list[Pending] = []
        for key in list(self._open):
            started, items = self._open[key]
            kept = [p for p in items if (p.source.topic, p.source.partition) not in partitions]
            dropped += [p for p in items if (p.source.topic, p.source.partition) in partitions]
            if kept:
                self._open[key] = (started, kept)
            else:
                del self._open[key]
        return dropped

    def __len__(self) -> int:
        return sum(len(items) for _, items in self._open.values())
