"""Checkpoints in the compacted ``extractor.checkpoints`` topic (one record per flow)."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from dingdee_common.codec import decode_model, encode_model
from dingdee_common.contracts import Checkpoint
from dingdee_common.errors import PoisonMessageError
from dingdee_common.kafka.reading import read_topic
from dingdee_common.observability.logging import get_logger
from dingdee_common.settings import KafkaSettings

__all__ = ["CheckpointStore"]

log = get_logger(__name__)
_V1 = frozenset({1})


class CheckpointStore:
    """Reads the latest checkpoint per flow at start; writes one after the records it covers."""

    def __init__(self, kafka: KafkaSettings, topic: str, producer: AIOKafkaProducer) -> None:
        self._kafka = kafka
        self._topic = topic
        self._producer = producer

    async def load(self) -> dict[str, Checkpoint]:
        """The last checkpoint of every key, reading the topic from the start to its end."""
        latest: dict[str, Checkpoint] = {}
        for record in await read_topic(self._kafka, self._topic):
            self._keep(latest, record.key, record.value)
        return latest

    @staticmethod
    def _keep(latest: dict[str, Checkpoint], key: bytes | None, value: bytes | None) -> None:
        if key is None or value is None:
            return
        try:
            latest[key.decode()] = decode_model(value, Checkpoint, supported_versions=_V1)
        except PoisonMessageError as exc:
            log.error("extractor.checkpoint.unreadable", key=key.decode(), error=str(exc))

    async def save(self, checkpoint: Checkpoint, key: str | None = None) -> None:
        """Write ``checkpoint`` and wait for the broker's ack."""
        await self._producer.send_and_wait(
            self._topic, value=encode_model(checkpoint), key=(key or checkpoint.flow).encode()
        )
