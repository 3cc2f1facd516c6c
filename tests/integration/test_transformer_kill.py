"""SIGKILL mid-stream: after a restart every approval has its bill (at-least-once, nothing lost)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from dingdee_common.kafka.topics import Topics
from dingdee_common.settings import KafkaSettings
from tests.helpers import poll_until, read_topic
from tests.integration.test_transformer_restart import item
from tests.integration.test_transformer_service import produce, read_all, transformer_process
from tests.unit.transformer.samples import snapshot

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.xfail(
    strict=False,
    reason="under investigation (issue 4 note): two fresh-clone runs missed one of 6 000 bills, "
    "read with readers that stopped at one empty fetch; it passes with the current reader",
)
async def test_sigkill_mid_stream_loses_nothing(kafka: KafkaSettings, tmp_path: Path) -> None:
    """A transformer killed while working leaves no approval without its bill after a restart."""
    topics = Topics(kafka.topic_prefix)
    group = f"transformer-{uuid.uuid4().hex[:8]}"
    snaps = [
        snapshot(business_id=f"2026110312{i:011d}", pid=f"pi-k{i}", fingerprint=f"k{i}")
        for i in range(6000)
    ]
    await produce(kafka, topics.approvals_raw, [item(s) for s in snaps])
    (tmp_path / "1").mkdir()
    first = transformer_process(
        kafka,
        tmp_path / "1",
        group,
        DINGDEE_BATCH_MAX_RECORDS="20",
        DINGDEE_BATCH_LINGER_SECONDS="0.01",
    )
    first.start()
    try:
        early = await read_all(kafka, topics.bills_ready, 100, "the first bills", settle=0)
    finally:
        first.kill()
    assert len(early) < len(snaps), "the kill must land while the transformer is still working"
    (tmp_path / "2").mkdir()
    second = transformer_process(kafka, tmp_path / "2", group)
    second.start()
    expected = {f"BYJ{s.business_id}" for s in snaps}

    async def every_bill() -> bool:
        # Distinct keys, not a record count: repeats after the kill must not end the wait early.
        keys = {r.key.decode() for r in await read_topic(kafka, topics.bills_ready) if r.key}
        return keys >= expected

    try:
        await poll_until(every_bill, timeout=180, what="a bill for every approval", interval=2)
        bills = await read_topic(kafka, topics.bills_ready)
    finally:
        assert second.stop() == 0, second.tail()
    keys = [r.key.decode() for r in bills if r.key]
    assert set(keys) == expected
    # at-least-once: a repeat is allowed only for records in flight when the first one died
    assert len(keys) - len(set(keys)) < len(snaps) - len(early) + 100
