"""Reading the compacted ``extractor.checkpoints`` topic: the latest checkpoint of every key."""

from __future__ import annotations

from dingdee_common.codec import decode_model
from dingdee_common.contracts import Checkpoint
from dingdee_common.errors import PoisonMessageError
from dingdee_common.kafka.reading import read_topic
from dingdee_common.observability.logging import get_logger
from dingdee_common.settings import KafkaSettings

__all__ = ["latest_checkpoints"]

log = get_logger(__name__)
_V1 = frozenset({1})


async def latest_checkpoints(kafka: KafkaSettings, topic: str) -> dict[str, Checkpoint]:
    """The last readable checkpoint of every key (flows, ``backfill:<flow>``), start to end.

    An unreadable record is logged and skipped: the key keeps its previous checkpoint.
    """
    latest: dict[str, Checkpoint] = {}
    for record in await read_topic(kafka, topic):
        if record.key is None or record.value is None:
            continue
        try:
            latest[record.key.decode()] = decode_model(
                record.value, Checkpoint, supported_versions=_V1
            )
        except PoisonMessageError as exc:
            log.error("checkpoint.unreadable", key=record.key.decode(), error=str(exc))
    return latest
