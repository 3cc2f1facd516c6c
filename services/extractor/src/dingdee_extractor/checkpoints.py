"""Checkpoints in the compacted ``extractor.checkpoints`` topic (one record per flow)."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from dingdee_common.checkpoints import latest_checkpoints
from dingdee_common.codec import encode_model
from dingdee_common.contracts import Checkpoint
from dingdee_common.settings import KafkaSettings

__all__ = ["CheckpointStore"]


class CheckpointStore:
    """Reads the latest checkpoint per flow at start; writes one after the records it covers."""

    def __init__(self, kafka: KafkaSettings, topic: str, producer: AIOKafkaProducer) -> None:
        self._kafka = kafka
        self._topic = topic
        self._producer = producer

    async def load(self) -> dict[str, Checkpoint]:
        """The last checkpoint of every key, reading the topic from the start to its end."""
        return await latest_checkpoints(self._kafka, self._topic)

    async def save(self, checkpoint: Checkpoint, key: str | None = None) -> None:
        """Write ``checkpoint`` and wait for the broker's ack."""
        await self._producer.send_and_wait(
            self._topic, value=encode_model(checkpoint), key=(key or checkpoint.flow).encode()
        )
