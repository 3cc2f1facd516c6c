"""In-memory stand-ins for the loader's consumer, producer and Kingdee client (``app.py``).

Like faststream's ``FakeConsumer``/``FakeProducer`` (and ``tests/unit/transformer/fakes.py``):
just enough of aiokafka's consumer and producer, and of ``KingdeeClient``, to run the batch loop
without a broker or Kingdee, recording what it was asked to do.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from dingdee_loader.kingdee.models import RowResult

TOPIC = "bills.ready"
TP0 = TopicPartition(TOPIC, 0)


def record(offset: int, value: bytes, headers: list[tuple[str, bytes]] | None = None) -> Any:
    """A consumer record of ``bills.ready`` partition 0, written long ago."""
    return ConsumerRecord(
        TOPIC, 0, offset, 1_000, 0, b"", value, None, 0, len(value), headers or []
    )


class FakeConsumer:
    """Hands out the given fetches once each, then nothing; records commits and pauses."""

    def __init__(self, *fetches: list[Any]) -> None:
        self._fetches = list(fetches)
        self.committed: list[dict[TopicPartition, int]] = []
        self._paused: set[TopicPartition] = set()
        self.drained = asyncio.Event()

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> Any:
        if not self._fetches:
            self.drained.set()
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        return {TP0: self._fetches.pop(0)}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.append(dict(offsets))

    def highwater(self, tp: TopicPartition) -> int | None:
        return None

    def assignment(self) -> set[TopicPartition]:
        return {TP0}

    def pause(self, *partitions: TopicPartition) -> None:
        self._paused.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self._paused.difference_update(partitions)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)


@dataclass
class Sent:
    topic: str
    value: bytes
    key: bytes | None
    headers: list[tuple[str, bytes]]


@dataclass
class FakeProducer:
    """Every send is acknowledged at once; ``sent`` keeps them in order."""

    sent: list[Sent] = field(default_factory=list)

    async def send(
        self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None, **_: Any
    ) -> asyncio.Future[None]:
        self.sent.append(Sent(topic, value, key, list(headers or [])))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def send_and_wait(self, topic: str, value: bytes, **kwargs: Any) -> None:
        await (await self.send(topic, value, **kwargs))

    def to(self, topic: str) -> list[Sent]:
        return [s for s in self.sent if s.topic == topic]


@dataclass
class FakeKingdee:
    """``KingdeeClient``'s two business calls: ``rows`` answers BatchSave by bill number."""

    rows: dict[str, RowResult]
    existing_numbers: set[str] = field(default_factory=set)
    saves: list[list[str]] = field(default_factory=list)

    async def existing(
        self, lane: Any, form_id: str, number_field: str, numbers: list[str]
    ) -> dict[str, int]:
        return {n: 1 for n in numbers if n in self.existing_numbers}

    async def batch_save(
        self, lane: Any, form_id: str, options: dict[str, Any], models: list[dict[str, Any]]
    ) -> dict[int, RowResult]:
        numbers = [str(m["FBillNo"]) for m in models]
        self.saves.append(numbers)
        return {i: self.rows[n] for i, n in enumerate(numbers)}
