"""In-memory stand-ins for the batch loop's source, consumer and producer (``batches.py``).

Like faststream's ``FakeConsumer``/``FakeProducer``: just enough of each protocol to run the
batch loop without a broker, recording what it was asked to do.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from faust.types import TP, Message

from dingdee_common.codec import encode_model
from dingdee_common.contracts.v1 import ApprovalSnapshot

TOPIC = "approvals.raw"


def message(snap: ApprovalSnapshot | bytes, offset: int, partition: int = 0) -> Message:
    """A faust message of ``approvals.raw`` as the consumer delivers it."""
    value = snap if isinstance(snap, bytes) else encode_model(snap)
    key = b"" if isinstance(snap, bytes) else snap.process_instance_id.encode()
    return Message(
        TOPIC, partition, offset, 1_700_000_000.0, 0, [], key, value, None, tp=TP(TOPIC, partition)
    )


class FakeSource:
    """Hands out the given batches, then waits for ever (after setting ``drained``)."""

    def __init__(self, *batches: list[Message]) -> None:
        self._batches = list(batches)
        self.drained = asyncio.Event()

    def ready(self) -> bool:
        return bool(self._batches)

    async def take(self, max_records: int, linger: float) -> list[Message]:
        if not self._batches:
            self.drained.set()
            await asyncio.Event().wait()
        return self._batches.pop(0)


@dataclass
class FakeOffsets:
    """Records the acks, in order; ``ends`` are the partitions' high watermarks."""

    acked: list[tuple[int, int]] = field(default_factory=list)
    ends: dict[TP, int] = field(default_factory=dict)

    def ack(self, message: Message) -> bool:
        self.acked.append((message.partition, message.offset))
        return True

    def highwater(self, tp: TP) -> int | None:
        return self.ends.get(tp)


class _Builder:
    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]] = []

    def append(
        self, *, timestamp: int | None, key: bytes, value: bytes, headers: list[tuple[str, bytes]]
    ) -> bool:
        self.records.append((key, value, headers))
        return True


@dataclass
class Sent:
    topic: str
    partition: int | None
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


class FakeProducer:
    """aiokafka's producer as the batch loop and the DLQ publisher use it.

    The first ``fail_batches`` record batches fail; ``sent`` holds every record the broker
    acknowledged, in order.
    """

    def __init__(self, *, partitions: int = 3, fail_batches: int = 0) -> None:
        self.partitions = partitions
        self.fail_batches = fail_batches
        self.sent: list[Sent] = []

    def record_batches(self) -> FakeProducer:
        return self

    def on(self, topic: str) -> list[Sent]:
        return [s for s in self.sent if s.topic == topic]

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def create_batch(self) -> _Builder:
        return _Builder()

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.fail_batches:
            self.fail_batches -= 1
            future.set_exception(ConnectionError("broker gone"))
            return future
        for key, value, headers in batch.records:
            self.sent.append(Sent(topic, partition, key, value, list(headers)))
        future.set_result(None)
        return future

    async def send_and_wait(self, topic: str, **record: Any) -> object:
        headers = list(record.get("headers") or [])
        self.sent.append(Sent(topic, None, record.get("key"), record.get("value"), headers))
        return None
