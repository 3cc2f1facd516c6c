"""In-memory stand-ins for the loader's consumer, producer and Kingdee client (``app.py``).

The consumer and producer are the shared fakes of ``tests/kafka_fakes.py``; ``FakeKingdee`` is
the sink's ``BillStore``. Together they run the batch loop without a broker or Kingdee,
recording what it was asked to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from dingdee_common.errors import TransientError
from dingdee_loader.kingdee.client import Lane
from dingdee_loader.kingdee.models import RowResult
from tests.kafka_fakes import FakeConsumer, FakeProducer, Sent, consumer_record

__all__ = ["TOPIC", "TP0", "FakeConsumer", "FakeKingdee", "FakeProducer", "Sent", "record"]

TOPIC = "bills.ready"
TP0 = TopicPartition(TOPIC, 0)


def record(offset: int, value: bytes, headers: list[tuple[str, bytes]] | None = None) -> Any:
    """A consumer record of ``bills.ready`` partition 0, written long ago."""
    return consumer_record(TOPIC, 0, offset, value, headers=headers)


@dataclass
class FakeKingdee:
    """``KingdeeClient``'s two business calls: ``rows`` answers BatchSave by bill number; while
    ``down`` every call fails as an unreachable Kingdee does (transient)."""

    rows: dict[str, RowResult]
    existing_numbers: set[str] = field(default_factory=set)
    saves: list[list[str]] = field(default_factory=list)
    down: bool = False

    def _answer(self) -> None:
        if self.down:
            raise TransientError("Kingdee: connection refused", code="kingdee_unreachable")

    async def existing(
        self, lane: Lane, form_id: str, number_field: str, numbers: list[str]
    ) -> dict[str, int]:
        self._answer()
        return {n: 1 for n in numbers if n in self.existing_numbers}

    async def batch_save(
        self, lane: Lane, form_id: str, options: dict[str, Any], models: list[dict[str, Any]]
    ) -> dict[int, RowResult]:
        self._answer()
        numbers = [str(m["FBillNo"]) for m in models]
        self.saves.append(numbers)
        return {i: self.rows[n] for i, n in enumerate(numbers)}
