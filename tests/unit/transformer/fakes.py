"""In-memory stand-ins for the batch loop's source, consumer and producer (``batches.py``).

Like faststream's ``FakeConsumer``/``FakeProducer``: just enough of each protocol to run the
batch loop without a broker, recording what it was asked to do; the producer is the shared one
of ``tests/kafka_fakes.py``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from faust.types import TP, Message

from dingdee_common.codec import encode_model
from dingdee_common.contracts.v1 import ApprovalSnapshot
from tests.kafka_fakes import FakeProducer, Sent

__all__ = ["TOPIC", "FakeOffsets", "FakeProducer", "FakeSource", "Sent", "message"]

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
