"""aiokafka client factories configured from :class:`KafkaSettings`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError

from dingdee_common.errors import TransientError
from dingdee_common.retry import retry_until_ok
from dingdee_common.settings import KafkaSettings, RetrySettings

__all__ = ["broker_unavailable", "make_consumer", "make_producer", "until_broker_answers"]

T = TypeVar("T")


def broker_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the broker did not answer in time (frozen, unreachable, electing).

    Such a failure is back-pressure: nothing past the last acknowledged point was lost, and the
    same work succeeds once the broker answers. Anything else from Kafka (a record too large,
    authorisation) will not heal by waiting.
    """
    return isinstance(exc, KafkaTimeoutError) or (isinstance(exc, KafkaError) and exc.retriable)


async def until_broker_answers(
    call: Callable[[], Awaitable[T]],
    what: str,
    policy: RetrySettings,
    on_wait: Callable[[TransientError, int, float], None] | None = None,
) -> T:
    """Run ``call`` until the broker answers it: a broker that does not (frozen, unreachable,
    a partition changing leader) is back-pressure, waited out with ``policy``'s backoff and no
    budget (``retry_until_ok``). Any other Kafka error is raised unchanged.

    A call repeated after a timeout may have been written once already: what it writes must be
    at-least-once safe (keyed, or checked by its reader).
    """

    async def once() -> T:
        try:
            return await call()
        except KafkaError as exc:
            if not broker_unavailable(exc):
                raise
            raise TransientError(
                f"Kafka did not answer {what} ({type(exc).__name__}: {exc})"
            ) from exc

    return await retry_until_ok(once, policy, on_retry=on_wait)


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
