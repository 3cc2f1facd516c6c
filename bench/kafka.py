"""The broker a bench runs against: ``DINGDEE_KAFKA__BOOTSTRAP_SERVERS`` if set, else embedded."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

from dingdee_common.kafka.topics import provision
from dingdee_common.settings import KafkaSettings
from dingdee_dev.broker import ENV_BOOTSTRAP, EmbeddedBroker

__all__ = ["bench_kafka", "run_with_bootstrap"]


@contextlib.asynccontextmanager
async def bench_kafka(workdir: Path) -> AsyncIterator[KafkaSettings]:
    """Settings with a fresh, provisioned topic prefix; an embedded broker lives as long as this."""
    broker = None
    bootstrap = os.environ.get(ENV_BOOTSTRAP)
    if not bootstrap:
        broker = EmbeddedBroker(log_path=workdir / "broker.log")
        await asyncio.to_thread(broker.start)
        bootstrap = broker.bootstrap_servers
    try:
        kafka = KafkaSettings(
            bootstrap_servers=bootstrap, topic_prefix=f"bench{uuid.uuid4().hex[:6]}."
        )
        await provision(kafka)
        yield kafka
    finally:
        if broker is not None:
            await asyncio.to_thread(broker.stop)


def run_with_bootstrap(run: Callable[[str], Coroutine[Any, Any, None]]) -> None:
    """``asyncio.run(run(bootstrap))`` on ``DINGDEE_KAFKA__BOOTSTRAP_SERVERS``, or an embedded
    broker that lives as long as the run."""
    external = os.environ.get(ENV_BOOTSTRAP)
    if external:
        asyncio.run(run(external))
        return
    with EmbeddedBroker() as broker:
        asyncio.run(run(broker.bootstrap_servers))
