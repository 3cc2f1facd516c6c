"""Flood guard (DESIGN §4): a run of dead letters stops the transformer instead of draining."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest

from dingdee_common.codec import encode_model
from dingdee_common.kafka.topics import Topics
from dingdee_common.settings import KafkaSettings
from tests.helpers import poll_until
from tests.integration.test_transformer_service import produce, read_all, transformer_process
from tests.unit.transformer.samples import snapshot

pytestmark = pytest.mark.integration


async def test_consecutive_dead_letters_trip_the_guard(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    topics = Topics(kafka.topic_prefix)
    bad = [(f"pi-bad-{i}".encode(), b"not json at all") for i in range(30)]
    await produce(kafka, topics.approvals_raw, bad)
    proc = transformer_process(
        kafka,
        tmp_path,
        f"transformer-{uuid.uuid4().hex[:8]}",
        DINGDEE_FLOOD_GUARD__MAX_CONSECUTIVE="5",
        DINGDEE_FLOOD_GUARD__MIN_RECORDS="1000",
    )
    proc.start()
    port = proc.port  # type: ignore[attr-defined]
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:

            async def tripped() -> bool:
                try:
                    response = await client.get(f"http://127.0.0.1:{port}/readyz")
                except httpx.HTTPError:
                    return False
                return response.status_code == 503 and "flood guard" in response.text

            await poll_until(tripped, timeout=120, what="/readyz reporting the tripped flood guard")
            metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        assert 'dingdee_flood_guard_tripped{stage="transformer"} 1.0' in metrics
        good = snapshot(pid="pi-after-trip")
        await produce(kafka, topics.approvals_raw, [(b"pi-after-trip", encode_model(good))])
        dead = await read_all(kafka, topics.dlq("transformer"), 5, "the five dead letters")
        assert len(dead) == 5, "the guard stops at the fifth consecutive dead letter"
        await asyncio.sleep(2)
        consumer_bills = await read_all(kafka, topics.bills_ready, 0, "no bills")
        assert consumer_bills == [], "a tripped transformer consumes nothing more"
    finally:
        code = proc.stop()
        print(proc.tail(30))
    assert code == 0
