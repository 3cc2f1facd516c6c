"""Which Kafka errors are an unavailable broker (wait it out) and which are not."""

from __future__ import annotations

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NodeNotReadyError,
    NotLeaderForPartitionError,
    RequestTimedOutError,
    TopicAuthorizationFailedError,
)

from dingdee_common.kafka.clients import broker_unavailable


class TestBrokerUnavailable:
    @pytest.mark.parametrize(
        "exc",
        [
            KafkaTimeoutError(),  # a batch expired in the accumulator: the broker never answered
            RequestTimedOutError(),
            KafkaConnectionError(),
            NodeNotReadyError(),
            NotLeaderForPartitionError(),
        ],
    )
    def test_timeouts_and_lost_connections_are_waited_out(self, exc: Exception) -> None:
        assert broker_unavailable(exc)

    @pytest.mark.parametrize(
        "exc", [MessageSizeTooLargeError(), TopicAuthorizationFailedError(), ValueError("bug")]
    )
    def test_errors_waiting_cannot_heal_are_not(self, exc: Exception) -> None:
        assert not broker_unavailable(exc)
