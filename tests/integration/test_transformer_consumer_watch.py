"""A transformer whose Kafka consumer died is stopped, not left "alive" with records piling up.

faust runs aiokafka's group coordination as a background task; when it dies (faust's own assignor
once rejected an assignment after a SIGKILL + restart in CI) faust logs the traceback and keeps a
consumer that never fetches again. ``consumer_failure`` is what the worker's heartbeat checks.
Here a real aiokafka consumer joins a real group with an assignor that rejects its assignment the
way faust's did.
"""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from faust.transport.drivers import aiokafka as faust_aiokafka

from dingdee_common.kafka.clients import make_consumer
from dingdee_common.kafka.topics import Topics
from dingdee_common.settings import KafkaSettings
from dingdee_transformer.faust_adapter import consumer_failure
from tests.helpers import poll_until


class _RejectingAssignor(RoundRobinPartitionAssignor):  # type: ignore[misc]  # aiokafka: untyped
    name = "rejecting"

    @classmethod
    def on_assignment(cls, assignment: Any) -> None:
        raise AssertionError("assignment does not match the assignor's metadata")


def _faust_shaped(consumer: Any, *, stopping: bool = False) -> Any:
    """``app.consumer._thread._consumer`` as faust's aiokafka driver lays it out."""
    thread = SimpleNamespace(_consumer=consumer)
    return SimpleNamespace(
        consumer=SimpleNamespace(_thread=thread, should_stop=stopping, delivery_failure=None)
    )


def test_the_attribute_path_matches_faust() -> None:
    assert "_thread" in faust_aiokafka.Consumer.__annotations__
    assert "_consumer" in faust_aiokafka.AIOKafkaConsumerThread.__annotations__


async def test_a_dead_coordinator_is_reported_and_a_healthy_one_is_not(
    kafka: KafkaSettings,
) -> None:
    topic = Topics(kafka.topic_prefix).approvals_raw
    healthy = make_consumer(kafka, group_id=f"ok-{uuid.uuid4().hex[:8]}")
    broken = make_consumer(
        kafka,
        group_id=f"broken-{uuid.uuid4().hex[:8]}",
        partition_assignment_strategy=[_RejectingAssignor],
    )
    assert consumer_failure(_faust_shaped(None)) is None, "not started yet is not a failure"
    await healthy.start()
    await broken.start()
    # subscribed after start: start() itself would wait for the topics' metadata first
    healthy.subscribe([topic])
    broken.subscribe([topic])
    try:
        await poll_until(
            lambda: consumer_failure(_faust_shaped(broken)) is not None,
            timeout=60,
            what="the rejected assignment to end the coordination task",
        )
        reason = consumer_failure(_faust_shaped(broken))
        assert reason is not None and reason.startswith("group coordination ended")
        assert "assignment does not match" in reason
        assert consumer_failure(_faust_shaped(broken, stopping=True)) is None
        await poll_until(lambda: bool(healthy.assignment()), timeout=60, what="an assignment")
        assert consumer_failure(_faust_shaped(healthy)) is None
    finally:
        await healthy.stop()
        await broken.stop()
