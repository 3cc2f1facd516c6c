"""Session fixtures: a real Kafka-protocol broker over TCP, per-test topic prefixes.

The broker is the embedded Tansu unless ``DINGDEE_KAFKA__BOOTSTRAP_SERVERS`` names a cluster, in
which case the same suite runs against it unchanged.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from dingdee_common.kafka.topics import Topics, provision
from dingdee_common.settings import KafkaSettings
from dingdee_dev.broker import ENV_BOOTSTRAP, EmbeddedBroker

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of the broker every Kafka test talks to."""
    external = os.environ.get(ENV_BOOTSTRAP)
    if external:
        yield external
        return
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log) as broker:
        yield broker.bootstrap_servers


@pytest.fixture
def kafka_factory(kafka_bootstrap: str) -> Callable[..., Awaitable[KafkaSettings]]:
    """Make settings with a fresh uuid topic prefix and provision its topics."""

    async def make(partitions: int = 3) -> KafkaSettings:
        settings = KafkaSettings(
            bootstrap_servers=kafka_bootstrap,
            topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
            partitions=partitions,
        )
        await provision(settings)
        return settings

    return make


@pytest.fixture
async def kafka(
    kafka_factory: Callable[..., Awaitable[KafkaSettings]],
) -> AsyncIterator[KafkaSettings]:
    yield await kafka_factory()


@pytest.fixture
def topics(kafka: KafkaSettings) -> Topics:
    return Topics(kafka.topic_prefix)


@pytest.fixture
def group_id() -> str:
    return f"g-{uuid.uuid4().hex[:10]}"
