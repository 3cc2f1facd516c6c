"""The loader as its own process between a real broker and the Kingdee sandbox over HTTP.

Bills go to ``bills.ready``; the sandbox must end with exactly the valid ones, ``dlq.loader`` with
exactly the invalid ones (Kingdee's message and field in the headers), ``bills.result`` with one
outcome per bill, and the consumer group's committed offsets at the end of the input.
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiokafka import ConsumerRecord, TopicPartition

from dingdee_common import codec
from dingdee_common.contracts.v1 import BillReady, BillResult, SourceRef
from dingdee_common.kafka import headers as hdr
from dingdee_common.kafka.clients import make_consumer, make_producer
from dingdee_common.kafka.reading import read_topic
from dingdee_common.kafka.topics import Topics
from dingdee_common.settings import KafkaSettings
from dingdee_common.web import start_site
from dingdee_dev.procs import ManagedProcess, wait_http_ok
from dingdee_sandbox.kingdee import SandboxConfig, SandboxState, create_app
from dingdee_sandbox.kingdee.demo import SAVE_OPTIONS, expense_model, invalid_expense_model
from dingdee_sandbox.kingdee.forms import FORMS
from dingdee_sandbox.kingdee.store import SaveOptions
from tests.helpers import poll_until

pytestmark = pytest.mark.integration

DEMO_CREDENTIALS = {
    "DINGDEE_KINGDEE__ACCT_ID": "5db25ac8d2b819",
    "DINGDEE_KINGDEE__USERNAME": "webapi",
    "DINGDEE_KINGDEE__APP_ID": "204399_72epSbtEQMC92Vwt2d3LRa9LRqSc1tqJ",
    "DINGDEE_KINGDEE__APP_SECRET": "fb7d46647ac346dbb5fcd45b65512a45",
}


@dataclass
class BillSet:
    """Bills sent to ``bills.ready``: which keys must be saved and which must be dead-lettered."""

    valid: set[str] = field(default_factory=set)
    invalid: set[str] = field(default_factory=set)
    records: list[BillReady] = field(default_factory=list)

    @property
    def all(self) -> set[str]:
        return self.valid | self.invalid


def make_bills(count: int, invalid_share: float, seed: int = 11, prefix: str = "BYJ") -> BillSet:
    """``count`` petty-cash bills, about ``invalid_share`` of them rejected by Kingdee."""
    rng = random.Random(seed)
    bills = BillSet()
    for n in range(count):
        key = f"{prefix}{n:07d}"
        bad = rng.random() < invalid_share
        model = invalid_expense_model(key, rng) if bad else expense_model(key, rng)
        (bills.invalid if bad else bills.valid).add(key)
        bills.records.append(
            BillReady(
                flow="petty-cash",
                bill_key=key,
                form_id="ER_ExpReimbursement",
                save_options=SAVE_OPTIONS,
                model=model,
                source=SourceRef(process_instance_id=f"pi-{n}", business_id=str(n)),
            )
        )
    return bills


async def produce(
    kafka: KafkaSettings,
    bills: list[BillReady],
    *,
    extra_headers: dict[str, str] | None = None,
    raw: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
) -> dict[int, int]:
    """Write ``bills`` (and undecodable ``raw`` pairs) to ``bills.ready``; partition → last offset.

    The offsets come from the broker's acks: Tansu's ListOffsets answers the last record batch's
    base offset + 1, so end offsets cannot tell when a consumer is done.
    """
    producer = make_producer(kafka)
    await producer.start()
    try:
        topic = Topics(kafka.topic_prefix).bills_ready
        futures = [
            await producer.send(
                topic,
                value=codec.encode_model(b),
                key=b.bill_key.encode(),
                headers=hdr.replace(
                    hdr.build(b.flow, b.source.process_instance_id), extra_headers or {}
                ),
            )
            for b in bills
        ]
        futures += [await producer.send(topic, value=v, key=k) for k, v in raw]
        last: dict[int, int] = {}
        for meta in await asyncio.gather(*futures):
            last[meta.partition] = max(last.get(meta.partition, -1), meta.offset)
        return last
    finally:
        await producer.stop()


@dataclass
class Sandbox:
    url: str
    state: SandboxState

    def numbers(self, form_id: str = "ER_ExpReimbursement") -> list[str]:
        return [r.number for r in self.state.store.bills(form_id)]


async def start_sandbox(config: SandboxConfig) -> tuple[Sandbox, web.AppRunner]:
    state = SandboxState(config)
    runner, port = await start_site(create_app(state))
    return Sandbox(f"http://127.0.0.1:{port}", state), runner


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    box, runner = await start_sandbox(SandboxConfig(latency_call_seconds=0.005, seed=3))
    yield box
    await runner.cleanup()


def loader_process(
    kafka: KafkaSettings, sandbox_url: str, group: str, log_path: Path, **extra: str
) -> tuple[ManagedProcess, int]:
    from dingdee_dev.broker import free_port

    port = free_port()
    env = {
        "DINGDEE_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "DINGDEE_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
        "DINGDEE_KINGDEE__SERVER_URL": f"{sandbox_url}/k3cloud",
        "DINGDEE_HTTP__HOST": "127.0.0.1",
        "DINGDEE_HTTP__PORT": str(port),
        "DINGDEE_GROUP_ID": group,
        "DINGDEE_TELEMETRY__LOG_FORMAT": "json",
        "DINGDEE_TELEMETRY__TRACING_ENABLED": "false",
        **DEMO_CREDENTIALS,
        **extra,
    }
    proc = ManagedProcess(
        "loader", [sys.executable, "-m", "dingdee_loader"], env=env, log_path=log_path
    )
    return proc, port


async def read_all(kafka: KafkaSettings, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` (the shared reader, which reads past Tansu's end offsets)."""
    return await read_topic(kafka, topic)


async def results_by_key(kafka: KafkaSettings) -> dict[str, list[BillResult]]:
    out: dict[str, list[BillResult]] = {}
    for record in await read_all(kafka, Topics(kafka.topic_prefix).bills_result):
        result = BillResult.model_validate_json(record.value or b"")
        out.setdefault(result.bill_key, []).append(result)
    return out


async def dead_letters(kafka: KafkaSettings) -> dict[str, list[dict[str, str]]]:
    """Bill key → the headers of each of its dead letters, in topic order."""
    out: dict[str, list[dict[str, str]]] = {}
    for record in await read_all(kafka, Topics(kafka.topic_prefix).dlq("loader")):
        out.setdefault((record.key or b"").decode(), []).append(hdr.as_dict(record.headers))
    return out


async def committed_to_end(kafka: KafkaSettings, group: str, last: dict[int, int]) -> bool:
    """True when the group's committed offset is past ``last`` (partition → last offset)."""
    topic = Topics(kafka.topic_prefix).bills_ready
    consumer = make_consumer(kafka, group_id=group)
    await consumer.start()
    try:
        for partition, offset in last.items():
            committed = await consumer.committed(TopicPartition(topic, partition))
            if committed is None or committed <= offset:
                return False
        return True
    finally:
        await consumer.stop()


def assert_exact(
    box: Sandbox, bills: BillSet, results: dict[str, Any], dlq: dict[str, Any]
) -> None:
    """Valid bills once in Kingdee, invalid ones once in the DLQ, one final outcome each."""
    numbers = box.numbers()
    assert len(numbers) == len(set(numbers)), "a bill was created twice"
    assert set(numbers) == bills.valid
    assert set(dlq) == bills.invalid
    assert set(results) == bills.all
    finals = {k: [r.outcome.value for r in v] for k, v in results.items()}
    for key in bills.valid:
        assert finals[key][-1] in ("saved", "already_exists"), (key, finals[key])
    for key in bills.invalid:
        assert finals[key][-1] == "failed", (key, finals[key])


async def test_valid_bills_saved_invalid_dead_lettered_offsets_committed(
    kafka: KafkaSettings, sandbox: Sandbox, group_id: str, tmp_path: Path
) -> None:
    """60 bills, ~10 % invalid: exact sets in Kingdee, dlq.loader, bills.result; offsets at end."""
    bills = make_bills(60, 0.1)
    last = await produce(kafka, bills.records, raw=[(b"poison-1", b"\xff not json")])
    proc, port = loader_process(kafka, sandbox.url, group_id, tmp_path / "loader.log")
    proc.start()
    try:
        await wait_http_ok(
            f"http://127.0.0.1:{port}/healthz", timeout=30, process=proc, what="loader"
        )

        async def all_results() -> bool:
            return len(await results_by_key(kafka)) >= len(bills.all)

        await poll_until(all_results, timeout=60, what="one bills.result per bill")
        await poll_until(
            lambda: committed_to_end(kafka, group_id, last),
            timeout=20,
            what="offsets committed to end",
        )
    finally:
        assert proc.stop() == 0, proc.tail()
    results, dlq = await results_by_key(kafka), await dead_letters(kafka)
    ((poison,),) = [dlq.pop("poison-1")]
    assert poison["dlq-error-class"] == "poison" and poison["dlq-error-type"] == "undecodable"
    assert_exact(sandbox, bills, results, dlq)
    assert all(len(v) == 1 for v in results.values())
    assert all(len(v) == 1 for v in dlq.values()), "a bill was dead-lettered twice"
    for key, (headers,) in dlq.items():
        assert headers["dlq-error-class"] == "permanent"
        assert headers["dlq-error-type"] == "kingdee_row_rejected"
        assert key in headers["dlq-error-message"]
        assert any(f in headers["dlq-error-message"] for f in ("FExpID", "FCausa", "FProposerID"))


async def test_replayed_and_duplicated_bills_are_not_created_twice(
    kafka: KafkaSettings, sandbox: Sandbox, group_id: str, tmp_path: Path
) -> None:
    """A replayed bill Kingdee already has is found by ExecuteBillQuery and never re-sent; a bill
    twice in bills.ready is saved once and reported already_exists the second time."""
    bills = make_bills(20, 0.0, seed=41)
    already = bills.records[:5]
    store = sandbox.state.store
    store.save(FORMS["ER_EXPREIMBURSEMENT"], [b.model for b in already], SaveOptions())
    log = tmp_path / "loader.log"
    proc, port = loader_process(
        kafka, sandbox.url, group_id, log, DINGDEE_PRECHECK_CLOCK_SKEW_SECONDS="0"
    )
    proc.start()
    try:
        await wait_http_ok(f"http://127.0.0.1:{port}/healthz", timeout=30, process=proc)
        await poll_until(
            lambda: "loader.partitions.assigned" in log.read_text(), timeout=60, what="assignment"
        )
        # written after the assignment: only the replay header makes these suspect
        await produce(kafka, already, extra_headers={"dlq-replay-count": "1"})
        await produce(kafka, bills.records[5:] + bills.records[15:])

        async def all_results() -> bool:
            return sum(len(v) for v in (await results_by_key(kafka)).values()) >= 25

        await poll_until(all_results, timeout=60, what="25 results")
    finally:
        assert proc.stop() == 0, proc.tail()
    results = await results_by_key(kafka)
    assert sorted(sandbox.numbers()) == sorted(bills.valid)
    for bill in already:
        (result,) = results[bill.bill_key]
        found = store.find("ER_ExpReimbursement", bill.bill_key)
        assert result.outcome.value == "already_exists" and found is not None
        assert result.kingdee_id == found.id, "the existence check reports Kingdee's id"
    for bill in bills.records[15:]:
        outcomes = sorted(r.outcome.value for r in results[bill.bill_key])
        assert outcomes == ["already_exists", "saved"]
    stats = sandbox.state.stats
    assert stats["calls_executebillquery"] >= 1
    assert stats["packages_rejected"] == 5, "only the in-topic duplicates reach BatchSave twice"
