"""Restart, then scale out: offsets committed on a clean stop are not read again, the restarted
worker restores its dedup table and recognises re-sent snapshots, a second replica joins, nobody
crashes, nothing is lost, no bill is emitted twice, and every log line is JSON.

This is KEDA scaling the transformer out after a restart. The restarted worker restores the table
from its changelog, which the first worker wrote in multi-record batches; the join then moves some
partitions away and the restarted worker keeps the rest. faust reads a changelog up to the end the
broker lists, and Tansu lists "base offset of the last batch + 1": the restore stopped short (the
re-sent snapshots below were emitted again), and when the kept partitions were checked against
that short end, faust's consistency check took the worker's own restore for a corrupt store and
crashed it (CI, pipeline SIGKILL test). ``TransformerConsumer.highwaters`` asks for the exact ends.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path

import pytest

from dingdee_common.contracts.v1 import ApprovalSnapshot
from dingdee_common.kafka.topics import Topics
from dingdee_common.settings import KafkaSettings
from dingdee_dev.procs import ManagedProcess
from tests.helpers import json_log_lines, poll_until, read_topic
from tests.integration.test_transformer_kill import _bill_keys, _committed, _produce_batched
from tests.integration.test_transformer_service import item, transformer_process
from tests.unit.transformer.samples import snapshot

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _snaps(start: int, n: int) -> list[ApprovalSnapshot]:
    return [
        snapshot(business_id=f"2026110313{i:011d}", pid=f"pi-s{i}", fingerprint=f"s{i}")
        for i in range(start, start + n)
    ]


async def test_a_replica_joining_a_restored_worker_crashes_nothing(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    topics = Topics(kafka.topic_prefix)
    group = f"transformer-{uuid.uuid4().hex[:8]}"
    first, second, third = _snaps(0, 150), _snaps(150, 50), _snaps(200, 50)
    expected: set[str] = set()

    async def bills_for(snaps: list[ApprovalSnapshot], what: str) -> None:
        expected.update(f"BYJ{s.business_id}" for s in snaps)

        async def arrived() -> bool:
            return set(_bill_keys(await read_topic(kafka, topics.bills_ready))) >= expected

        await poll_until(arrived, timeout=150, what=what, interval=1.0)

    def worker(name: str) -> ManagedProcess:
        (tmp_path / name).mkdir()
        proc = transformer_process(kafka, tmp_path / name, group)
        proc.start()
        return proc

    a = worker("a")
    try:
        await _produce_batched(kafka, topics.approvals_raw, [item(s) for s in first])
        await bills_for(first, "the first worker's bills")
    finally:
        assert a.stop() == 0, a.tail()
    # a clean stop commits every acked offset: the restart reads nothing of ``first`` again
    committed = await _committed(kafka, group, topics.approvals_raw)
    sources = await read_topic(kafka, topics.approvals_raw)
    assert sum(committed.values()) == len(sources) == len(first), committed

    # b restores the table a wrote, then re-sent snapshots must be recognised
    b = worker("b")
    c = None
    try:
        await _produce_batched(kafka, topics.approvals_raw, [item(s) for s in first[:30] + second])
        await bills_for(second, "the restarted worker's bills")
        c = worker("c")

        def assignments(name: str) -> int:
            log = (tmp_path / name / "transformer.log").read_text(errors="replace")
            return log.count('"transformer.partitions.assigned"')

        # c joins: the group rebalances, b keeps some partitions (and re-checks what it restored)
        await poll_until(
            lambda: assignments("c") >= 1 and assignments("b") >= 2,
            timeout=120,
            what="the rebalance that gives c partitions",
        )
        await _produce_batched(kafka, topics.approvals_raw, [item(s) for s in first[30:60] + third])
        await bills_for(third, "the bills after the second replica joined")
        await asyncio.sleep(3)  # a late duplicate would show up here
    finally:
        if c is not None:
            assert c.stop() == 0, c.tail()
        assert b.stop() == 0, b.tail()

    counts = Counter(_bill_keys(await read_topic(kafka, topics.bills_ready)))
    assert set(counts) == expected
    twice = sorted(k for k, n in counts.items() if n > 1)
    assert not twice, f"bills emitted twice: {twice[:10]}"
    # faust's and aiokafka's own records are JSON lines too (no plain or coloured text)
    for name in ("a", "b", "c"):
        lines = json_log_lines(tmp_path / name / "transformer.log")
        assert lines[-1]["event"] == "transformer.stopped", lines[-1]
