"""`dingdee dlq replay` on the real broker: filters, dry run, byte identity, cap, audit, SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from asyncio.subprocess import DEVNULL, PIPE, STDOUT
from dataclasses import dataclass

import orjson
import pytest
from aiokafka import TopicPartition

from dingdee_common.codec import decode_model
from dingdee_common.contracts.v1 import ReplayAudit
from dingdee_common.errors import ErrorClass
from dingdee_common.kafka import dlq as dlqh
from dingdee_common.kafka import headers as hdr
from dingdee_common.kafka.clients import make_consumer, make_producer
from dingdee_common.kafka.dlq import DeadLetterPublisher, SourceRecord
from dingdee_common.kafka.reading import partitions_of
from dingdee_common.kafka.topics import Topics
from dingdee_common.settings import KafkaSettings
from dingdee_ops.dlq import Action, ReplayEngine, ReplayOptions, Selection
from dingdee_ops.dlq.records import REPLAY_RUN, REPLAYED_FROM
from dingdee_ops.dlq.scan import read_window
from tests.helpers import poll_until

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Seed:
    stage: str
    original: str
    key: str
    flow: str = "petty-cash"
    error_class: ErrorClass = ErrorClass.PERMANENT
    error_type: str = "kingdee_row_rejected"
    message: str = "费用类型 FY999 不存在，请在金蝶中新增后重放"
    replay_count: int = 0


async def seed(kafka: KafkaSettings, topics: Topics, seeds: list[Seed]) -> None:
    """Dead-letter each seed through the real publisher (the DESIGN §3 headers, acked)."""
    producer = make_producer(kafka)
    await producer.start()
    try:
        for i, s in enumerate(seeds):
            headers = hdr.build(s.flow, f"inst-{s.key}")
            headers.append(("x-binary", bytes([0, 255, i % 256])))
            if s.replay_count:
                headers = hdr.replace(headers, {dlqh.REPLAY_COUNT: str(s.replay_count)})
            value = orjson.dumps({"schema_version": 1, "bill_key": s.key, "备注": "报销"})
            record = SourceRecord(
                s.original, i % 3, 1000 + i, s.key.encode(), value, tuple(headers)
            )
            await DeadLetterPublisher(producer, topics, s.stage).publish(
                record, error_class=s.error_class, error_type=s.error_type, message=s.message
            )
    finally:
        await producer.stop()


async def read_topic(
    kafka: KafkaSettings, topic: str
) -> list[tuple[bytes | None, bytes | None, tuple[tuple[str, bytes], ...]]]:
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    try:
        tps = await partitions_of(consumer, [topic])
        letters, _ = await read_window(consumer, tps)
    finally:
        await consumer.stop()
    return [(d.key, d.value, d.headers) for d in letters]


async def committed(kafka: KafkaSettings, engine: ReplayEngine, topic: str) -> int | None:
    consumer = make_consumer(kafka, group_id=engine.group_id)
    await consumer.start()
    try:
        return await consumer.committed(TopicPartition(topic, 0))  # type: ignore[no-any-return]
    finally:
        await consumer.stop()


async def audits(kafka: KafkaSettings, topics: Topics) -> list[ReplayAudit]:
    rows = await read_topic(kafka, topics.replay_audit)
    return [decode_model(v, ReplayAudit, supported_versions=frozenset({1})) for _, v, _ in rows]


def loader_seeds(topics: Topics, n: int) -> list[Seed]:
    return [Seed("loader", topics.bills_ready, f"BX-{i:04d}") for i in range(n)]


async def test_dry_run_counts_and_changes_nothing(kafka: KafkaSettings, topics: Topics) -> None:
    seeds = [
        *loader_seeds(topics, 4),
        Seed(
            "transformer",
            topics.approvals_raw,
            "inst-a",
            error_class=ErrorClass.POISON,
            error_type="undecodable",
        ),
        Seed("loader", topics.bills_ready, "BX-cap", replay_count=3),
    ]
    await seed(kafka, topics, seeds)
    engine = ReplayEngine(kafka, topics)
    report = await engine.run(ReplayOptions(who="tester", sample_size=2))
    assert report.planned == {Action.REPLAY: 5, Action.PARK: 1}
    assert (
        report.groups[("loader", "permanent", "kingdee_row_rejected", "petty-cash", "replay")] == 4
    )
    assert report.groups[("transformer", "poison", "undecodable", "petty-cash", "replay")] == 1
    assert len(report.sample) == 2
    assert report.done == {}
    for topic in (topics.bills_ready, topics.approvals_raw, topics.parking):
        assert await read_topic(kafka, topic) == []
    assert await committed(kafka, engine, topics.dlq("loader")) is None
    [audit] = await audits(kafka, topics)
    assert audit.dry_run and audit.outcome == "dry_run" and audit.handled == {}
    assert audit.who == "tester"


async def test_filters_select_exactly(kafka: KafkaSettings, topics: Topics) -> None:
    await seed(
        kafka,
        topics,
        [
            Seed("loader", topics.bills_ready, "BX-1"),
            Seed("loader", topics.bills_ready, "BX-2", flow="department-sync"),
            Seed(
                "loader",
                topics.bills_ready,
                "BX-3",
                error_class=ErrorClass.EXHAUSTED,
                error_type="kingdee_timeout",
                message="金蝶超时 120s",
            ),
            Seed(
                "transformer",
                topics.approvals_raw,
                "inst-4",
                error_type="mapping_error",
                message="字段 金额 缺失",
            ),
        ],
    )
    engine = ReplayEngine(kafka, topics)

    async def keys(selection: Selection) -> set[str]:
        report = await engine.run(ReplayOptions(selection=selection, sample_size=100))
        return {p.letter.key_text for p in report.sample}

    assert await keys(Selection(stages=("loader",))) == {"BX-1", "BX-2", "BX-3"}
    assert await keys(Selection(flows=frozenset({"department-sync"}))) == {"BX-2"}
    assert await keys(Selection(error_classes=frozenset({"exhausted"}))) == {"BX-3"}
    assert await keys(Selection(error_types=frozenset({"mapping_error"}))) == {"inst-4"}
    assert await keys(Selection(pattern="超时")) == {"BX-3"}
    assert await keys(Selection(keys=frozenset({"inst-BX-1", "inst-4"}))) == {"BX-1", "inst-4"}


async def test_replay_is_byte_identical_then_acknowledged(
    kafka: KafkaSettings, topics: Topics
) -> None:
    seeds = [*loader_seeds(topics, 5), Seed("loader", topics.bills_ready, "BX-cap", replay_count=3)]
    await seed(kafka, topics, seeds)
    dead = await read_topic(kafka, topics.dlq("loader"))
    engine = ReplayEngine(kafka, topics)
    report = await engine.run(ReplayOptions(dry_run=False, who="tester", rate_per_second=0))
    assert report.done == {Action.REPLAY: 5, Action.PARK: 1}

    copies = await read_topic(kafka, topics.bills_ready)
    assert len(copies) == 5
    by_key = {k: (v, h) for k, v, h in dead}
    for key, value, headers in copies:
        original_value, original_headers = by_key[key]
        assert value == original_value
        replay_names = {
            dlqh.REPLAY_COUNT,
            REPLAY_RUN,
            REPLAYED_FROM,
            "dlq-replayed-at",
            "dlq-replayed-by",
        }
        kept = [(n, v) for n, v in original_headers if n not in replay_names]
        assert [(n, v) for n, v in headers if n not in replay_names] == kept
        assert hdr.get(headers, dlqh.REPLAY_COUNT) == "1"
        assert hdr.get(headers, REPLAY_RUN) == report.run_id
        assert hdr.get(headers, "traceparent") == hdr.get(original_headers, "traceparent")
        assert hdr.get(headers, "x-binary") is not None
    parked = await read_topic(kafka, topics.parking)
    assert [k for k, _, _ in parked] == [b"BX-cap"]
    assert await committed(kafka, engine, topics.dlq("loader")) == 6
    [audit] = await audits(kafka, topics)
    assert audit.outcome == "completed" and not audit.dry_run
    assert audit.handled == {f"{topics.dlq('loader')}:0": [(0, 5)]}
    assert audit.counts["done_replay"] == 5 and audit.counts["done_park"] == 1

    again = await engine.run(ReplayOptions(dry_run=False))
    assert sum(again.planned.values()) == 0, "a second run must find nothing new"
    assert len(await read_topic(kafka, topics.bills_ready)) == 5


async def test_refused_target_is_left_and_later_records_are_remembered(
    kafka: KafkaSettings, topics: Topics
) -> None:
    """A record with a target off the allow-list blocks the commit; the audit still remembers
    the records replayed after it, so a re-run does not copy them again."""
    await seed(
        kafka,
        topics,
        [
            Seed("loader", topics.bills_result, "BX-bad"),
            Seed("loader", topics.bills_ready, "BX-ok"),
        ],
    )
    engine = ReplayEngine(kafka, topics)
    first = await engine.run(ReplayOptions(dry_run=False, rate_per_second=0))
    assert first.done == {Action.REPLAY: 1}
    assert first.planned[Action.REFUSE] == 1
    assert await committed(kafka, engine, topics.dlq("loader")) is None
    second = await engine.run(ReplayOptions(dry_run=False, rate_per_second=0))
    assert second.planned == {Action.REFUSE: 1, Action.ALREADY: 1}
    assert second.done == {}
    forced = await engine.run(
        ReplayOptions(dry_run=False, rate_per_second=0, target_override=topics.bills_ready)
    )
    assert forced.done == {Action.REPLAY: 1}
    replayed = {k for k, _, _ in await read_topic(kafka, topics.bills_ready)}
    assert replayed == {b"BX-bad", b"BX-ok"}
    assert await committed(kafka, engine, topics.dlq("loader")) == 2


async def test_sigkill_mid_replay_loses_nothing(kafka: KafkaSettings, topics: Topics) -> None:
    """Kill the CLI while it copies; a re-run completes; every dead letter has a copy."""
    n = 300
    await seed(kafka, topics, loader_seeds(topics, n))
    engine = ReplayEngine(kafka, topics)
    env = {
        **os.environ,
        "DINGDEE_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "DINGDEE_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
    }
    argv = [
        sys.executable,
        "-c",
        "from dingdee_ops.cli.main import main; main()",
        "dlq",
        "replay",
        "--execute",
        "--stage",
        "loader",
    ]
    proc = await asyncio.create_subprocess_exec(
        *argv, "--rate", "30", env=env, stdout=DEVNULL, stderr=DEVNULL
    )
    try:

        async def copied_some() -> bool:
            return len(await read_topic(kafka, topics.bills_ready)) >= 110

        await poll_until(copied_some, timeout=60, what="the replay subprocess to copy 110 records")
        proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), timeout=10)
    finally:
        if proc.returncode is None:
            proc.kill()
    before = len(await read_topic(kafka, topics.bills_ready))
    assert before < n, "the kill must land mid-replay for this test to mean anything"
    rerun = await asyncio.create_subprocess_exec(
        *argv, "--rate", "0", env=env, stdout=PIPE, stderr=STDOUT
    )
    out, _ = await asyncio.wait_for(rerun.communicate(), timeout=120)
    assert rerun.returncode == 0, out.decode()
    copies = await read_topic(kafka, topics.bills_ready)
    keys = {k for k, _, _ in copies}
    assert keys == {f"BX-{i:04d}".encode() for i in range(n)}
    assert len(copies) - n <= 100, "only the chunk in flight at the kill may be copied twice"
    assert await committed(kafka, engine, topics.dlq("loader")) == n
