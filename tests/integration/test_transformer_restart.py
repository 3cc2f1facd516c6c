"""Restarts: offsets committed on a clean stop are not read again, and the dedup table is rebuilt
from its changelog, so a snapshot re-sent after the restart is still recognised as a duplicate."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from dingdee_common.codec import encode_model, loads
from dingdee_common.contracts.v1 import ApprovalSnapshot
from dingdee_common.kafka.topics import Topics
from dingdee_common.settings import KafkaSettings
from tests.integration.test_transformer_service import produce, read_all, transformer_process
from tests.unit.transformer.samples import snapshot

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def item(snap: ApprovalSnapshot) -> tuple[bytes, bytes]:
    return snap.process_instance_id.encode(), encode_model(snap)


async def test_restart_keeps_offsets_and_dedup_state(kafka: KafkaSettings, tmp_path: Path) -> None:
    topics = Topics(kafka.topic_prefix)
    group = f"transformer-{uuid.uuid4().hex[:8]}"
    a = snapshot(business_id="202611031200000000001", pid="pi-a", fingerprint="a1")
    b = snapshot(business_id="202611031200000000002", pid="pi-b", fingerprint="b1")
    await produce(kafka, topics.approvals_raw, [item(a), item(b)])

    first = transformer_process(kafka, tmp_path / "1", group)
    (tmp_path / "1").mkdir()
    first.start()
    try:
        await read_all(kafka, topics.bills_ready, 2, "the bills of a and b")
    finally:
        assert first.stop() == 0, first.tail()

    a_changed = a.model_copy(update={"fingerprint": "a2"})
    c = snapshot(business_id="202611031200000000003", pid="pi-c", fingerprint="c1")
    await produce(kafka, topics.approvals_raw, [item(a), item(a_changed), item(c)])
    second = transformer_process(kafka, tmp_path / "2", group)
    (tmp_path / "2").mkdir()
    second.start()
    try:
        # a restarted faust worker rejoins the group and restores its table first: on a loaded
        # 2-core machine that took over two minutes once
        bills = await read_all(
            kafka, topics.bills_ready, 4, "a, b, then a's change and c", timeout=240
        )
    finally:
        assert second.stop() == 0, second.tail()
    seen = sorted(
        (loads(r.value)["source"]["process_instance_id"], loads(r.value)["source"]["fingerprint"])
        for r in bills
        if r.value is not None
    )
    assert seen == [("pi-a", "a1"), ("pi-a", "a2"), ("pi-b", "b1"), ("pi-c", "c1")], seen
