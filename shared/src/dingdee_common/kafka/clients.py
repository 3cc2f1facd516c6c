"""aiokafka client factories configured from :class:`KafkaSettings`."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError

from dingdee_common.settings import KafkaSettings

__all__ = ["broker_unavailable", "make_consumer", "make_producer"]


def broker_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the broker did not answer in time (frozen, unreachable, electing).

    Such a failure is back-pressure: nothing past the last acknowledged point was lost, and the
    same work succeeds once the broker answers. Anything else from Kafka (a record too large,
    authorisation) will not heal by waiting.
    """
    return isinstance(exc, KafkaTimeoutError) or (isinstance(exc, KafkaError) and exc.retriable)


def make_producer(settings: KafkaSettings, **overrides: Any) -> AIOKafkaProducer:
    """A producer that waits for all in-sync replicas: a send is acked only once it is durable."""
    kwargs: dict[str, Any] = {
        **settings.client_kwargs(),
        "acks": "all",
        "enable_idempotence": settings.enable_idempotence,
        "linger_ms": 5,
        "max_batch_size": 1 << 20,
        "max_request_size": 4 << 20,
    }
    kwargs.update(overrides)
    return AIOKafkaProducer(**kwargs)


def make_consumer(
    settings: KafkaSettings, *topics: str, group_id: str | None, **overrides: Any
) -> AIOKafkaConsumer:
    """A consumer with manual commits: offsets move only after downstream acknowledged."""
    kwargs: dict[str, Any] = {
        **settings.client_kwargs(),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_uncommitted",
        "max_poll_records": 500,
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
        "session_timeout_ms": 30_000,
        "heartbeat_interval_ms": 3_000,
        "max_poll_interval_ms": 600_000,
    }
    kwargs.update(overrides)
    return AIOKafkaConsumer(*topics, **kwargs)
