"""Dead-letter publishing (DESIGN §3): original key, value and headers byte for byte, plus why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from dingdee_common.errors import ErrorClass
from dingdee_common.kafka import headers as hdr
from dingdee_common.kafka.protocols import RecordSender
from dingdee_common.kafka.topics import Topics

__all__ = [
    "DLQ_HEADERS",
    "DeadLetterPublisher",
    "SourceRecord",
    "dead_letter_headers",
]

ORIGINAL_TOPIC = "dlq-original-topic"
ORIGINAL_PARTITION = "dlq-original-partition"
ORIGINAL_OFFSET = "dlq-original-offset"
STAGE = "dlq-stage"
ERROR_CLASS = "dlq-error-class"
ERROR_TYPE = "dlq-error-type"
ERROR_MESSAGE = "dlq-error-message"
FAILED_AT = "dlq-failed-at"
ATTEMPTS = "dlq-attempts"
REPLAY_COUNT = "dlq-replay-count"
DLQ_HEADERS = (
    ORIGINAL_TOPIC,
    ORIGINAL_PARTITION,
    ORIGINAL_OFFSET,
    STAGE,
    ERROR_CLASS,
    ERROR_TYPE,
    ERROR_MESSAGE,
    FAILED_AT,
    ATTEMPTS,
    REPLAY_COUNT,
)
_MAX_MESSAGE_BYTES = 4000


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """The coordinates and bytes of the record that failed (aiokafka and faust both fit)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


def _truncate(text: str) -> str:
    raw = text.encode()
    if len(raw) <= _MAX_MESSAGE_BYTES:
        return text
    return raw[: _MAX_MESSAGE_BYTES - 3].decode(errors="ignore") + "..."


def dead_letter_headers(
    record: SourceRecord,
    *,
    stage: str,
    error_class: ErrorClass,
    error_type: str,
    message: str,
    attempts: int,
    failed_at: datetime | None = None,
) -> hdr.Headers:
    """The record's own headers plus the ``dlq-*`` headers (a replayed record keeps its count)."""
    replay_count = hdr.get(record.headers, REPLAY_COUNT) or "0"
    return hdr.replace(
        record.headers,
        {
            ORIGINAL_TOPIC: record.topic,
            ORIGINAL_PARTITION: str(record.partition),
            ORIGINAL_OFFSET: str(record.offset),
            STAGE: stage,
            ERROR_CLASS: error_class.value,
            ERROR_TYPE: error_type,
            ERROR_MESSAGE: _truncate(message),
            FAILED_AT: (failed_at or datetime.now(UTC)).isoformat(timespec="milliseconds"),
            ATTEMPTS: str(attempts),
            REPLAY_COUNT: replay_count,
        },
    )


class DeadLetterPublisher:
    """Writes dead letters of one stage to ``dlq.<stage>`` and waits for the broker's ack."""

    def __init__(self, producer: RecordSender, topics: Topics, stage: str) -> None:
        self._producer = producer
        self._topic = topics.dlq(stage)
        self._stage = stage

    @property
    def topic(self) -> str:
        return self._topic

    async def publish(
        self,
        record: SourceRecord,
        *,
        error_class: ErrorClass,
        error_type: str,
        message: str,
        attempts: int = 1,
    ) -> None:
        """Dead-letter ``record``; returns once the broker acknowledged the copy."""
        headers = dead_letter_headers(
            record,
            stage=self._stage,
            error_class=error_class,
            error_type=error_type,
            message=message,
            attempts=attempts,
        )
        await self._producer.send_and_wait(
            self._topic, value=record.value, key=record.key, headers=headers
        )
