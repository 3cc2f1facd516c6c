"""The transformer as its own process against the real broker: good approvals become bills, bad ones
dead letters with the DESIGN §3 headers and readable reasons, skips go nowhere, and duplicates of an
already emitted snapshot are not emitted twice."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from dingdee_common.codec import encode_model, loads
from dingdee_common.contracts.v1 import ApprovalSnapshot
from dingdee_common.kafka import headers as hdr
from dingdee_common.kafka.clients import make_consumer, make_producer
from dingdee_common.kafka.dlq import DLQ_HEADERS
from dingdee_common.kafka.topics import Topics
from dingdee_common.settings import KafkaSettings
from dingdee_dev.broker import free_port
from dingdee_dev.procs import ManagedProcess
from tests.helpers import demo_flows_file, poll_until
from tests.unit.transformer.samples import dept_form, petty_form, petty_row, snapshot

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def transformer_process(
    kafka: KafkaSettings, tmp_path: Path, group: str, **extra_env: str
) -> ManagedProcess:
    """The transformer as ``python -m dingdee_transformer`` on a fresh ops port."""
    port = free_port()
    proc = ManagedProcess.python_module(
        "transformer",
        "dingdee_transformer",
        env={
            "DINGDEE_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "DINGDEE_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
            "DINGDEE_KAFKA__PARTITIONS": str(kafka.partitions),
            "DINGDEE_FLOWS_FILE": str(demo_flows_file()),
            "DINGDEE_HTTP__PORT": str(port),
            "DINGDEE_HTTP__HOST": "127.0.0.1",
            "DINGDEE_GROUP_ID": group,
            "DINGDEE_TELEMETRY__LOG_FORMAT": "json",
            # a transformer on its own: no loader or extractor ever publishes a refresh marker,
            # the demo tables answer every lookup (tests/unit/refdata/test_first_refresh.py)
            "DINGDEE_REFDATA__FIRST_REFRESH_TIMEOUT_SECONDS": "0",
            **extra_env,
        },
        log_path=tmp_path / "transformer.log",
        cwd=tmp_path,  # faust creates its data directory here
    )
    proc.port = port  # type: ignore[attr-defined]
    return proc


@pytest.fixture
def running(kafka: KafkaSettings, tmp_path: Path) -> Iterator[ManagedProcess]:
    proc = transformer_process(kafka, tmp_path, f"transformer-{uuid.uuid4().hex[:8]}")
    proc.start()
    try:
        yield proc
    finally:
        code = proc.stop()
        log = (tmp_path / "transformer.log").read_text(errors="replace")
        print(log[-4000:])
        assert code == 0, f"transformer exited with {code}"


def _good(i: int) -> ApprovalSnapshot:
    return snapshot(business_id=f"2026110312000000{i:05d}", pid=f"pi-good-{i}", fingerprint=f"f{i}")


def _cases() -> tuple[list[ApprovalSnapshot], list[ApprovalSnapshot], list[ApprovalSnapshot]]:
    good = [_good(i) for i in range(8)]
    good.append(
        snapshot("department-sync", dept_form(code="BM009001"), business_id="D1", pid="pi-dept-1")
    )
    bad = [
        snapshot(
            form=petty_form([petty_row("a", "办公用品", "10"), petty_row("b", "差旅费", "12,3a")]),
            business_id="202611031200000099001",
            pid="pi-bad-money",
        ),
        snapshot(
            biz_action="REVOKE",
            business_id="202611031200000099003",
            pid="pi-bad-revoke",
            main_process_instance_id="pi-good-0",
        ),
    ]
    skipped = [
        snapshot(status="RUNNING", result=None, business_id="S1", pid="pi-run"),
        snapshot(result="refuse", business_id="S2", pid="pi-refused"),
        snapshot(status="TERMINATED", result=None, business_id="S3", pid="pi-term"),
    ]
    return good, bad, skipped


async def read_all(
    kafka: KafkaSettings,
    topic: str,
    want: int,
    what: str,
    *,
    settle: float = 3.0,
    timeout: float = 120.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` once at least ``want`` arrived, read ``settle`` s longer."""
    consumer: AIOKafkaConsumer = make_consumer(kafka, topic, group_id=None)
    await consumer.start()
    got: list[ConsumerRecord[bytes, bytes]] = []
    try:

        async def enough() -> bool:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                got.extend(records)
            return len(got) >= want

        await poll_until(enough, timeout=timeout, what=what, interval=0.1)
        # Anything beyond ``want`` would be a duplicate: read a little longer to catch it.
        if settle:
            await asyncio.sleep(settle)
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                got.extend(records)
    finally:
        await consumer.stop()
    return got


def item(snap: ApprovalSnapshot) -> tuple[bytes, bytes]:
    """A snapshot as the (key, value) the extractor produces."""
    return snap.process_instance_id.encode(), encode_model(snap)


async def produce(kafka: KafkaSettings, topic: str, items: list[tuple[bytes, bytes]]) -> None:
    producer = make_producer(kafka)
    await producer.start()
    try:
        for key, value in items:
            headers = [("traceparent", TRACEPARENT.encode()), (hdr.FLOW, b"petty-cash")]
            await producer.send_and_wait(topic, value=value, key=key, headers=headers)
    finally:
        await producer.stop()


def _decoded(records: list[ConsumerRecord[bytes, bytes]]) -> list[dict[str, Any]]:
    return [loads(r.value) for r in records if r.value is not None]


async def test_good_bills_bad_dead_letters_skips_nothing(
    kafka: KafkaSettings, running: ManagedProcess
) -> None:
    topics = Topics(kafka.topic_prefix)
    good, bad, skipped = _cases()
    items = [item(s) for s in good + bad + skipped]
    poison = [(b"pi-poison-1", b"\xff not json"), (b"pi-poison-2", b'{"schema_version": 9}')]
    # a staff member missing from the live tables waits (parked), it is no dead letter (#14)
    items.append(
        item(snapshot(userid="nobody", business_id="202611031200000099002", pid="pi-bad-staff"))
    )
    duplicate = [item(good[0])]
    changed_snap = good[1].model_copy(update={"fingerprint": "f1-changed"})
    changed = [item(changed_snap)]
    await produce(kafka, topics.approvals_raw, items + poison + duplicate + changed)

    bills = await read_all(kafka, topics.bills_ready, len(good) + 1, "bills of the good approvals")
    dead = await read_all(kafka, topics.dlq("transformer"), len(bad) + 2, "dead letters")

    want_keys = {f"BYJ{s.business_id}" for s in good[:-1]} | {"BM009001"}
    # every good approval once, plus the changed snapshot of good[1] again; the duplicate never
    assert sorted(r.key.decode() for r in bills if r.key) == sorted(
        [*want_keys, f"BYJ{good[1].business_id}"]
    )
    fingerprints = sorted(d["source"]["fingerprint"] for d in _decoded(bills))
    assert fingerprints == sorted([s.fingerprint for s in good] + ["f1-changed"])
    trace_id = TRACEPARENT.split("-")[1]
    for record in bills:
        headers = hdr.as_dict(record.headers)
        assert headers["traceparent"].split("-")[1] == trace_id
        # No trace collector here, so no span is recorded and the approval's context passes on
        # unchanged (tests/integration/test_tracing_e2e.py checks the spans with one).
        assert headers["traceparent"] == TRACEPARENT
        assert headers[hdr.FLOW] in {"petty-cash", "department-sync"}
        assert headers[hdr.SOURCE_ID].startswith("pi-")

    by_key = {r.key: hdr.as_dict(r.headers) for r in dead}
    assert set(by_key) == {s.process_instance_id.encode() for s in bad} | {k for k, _ in poison}
    for headers in by_key.values():
        assert set(DLQ_HEADERS) <= set(headers)
        assert headers["dlq-original-topic"] == topics.approvals_raw
        assert headers["dlq-stage"] == "transformer"
    money = by_key[b"pi-bad-money"]
    assert money["dlq-error-class"] == "permanent"
    assert "费用明细第2行 金额 '12,3a' is not a number" in money["dlq-error-message"]
    assert "202611031200000099001" in money["dlq-error-message"]
    assert b"pi-bad-staff" not in by_key
    parked = await read_all(kafka, topics.parked, 1, "the parked record")
    assert [r.key for r in parked] == [b"pi-bad-staff"]
    reason = hdr.as_dict(parked[0].headers)["dingdee-parked-reason"]
    assert "员工 nobody is not in the DingTalk contacts" in reason
    revoke = by_key[b"pi-bad-revoke"]["dlq-error-message"]
    assert "pi-good-0" in revoke and "BYJ202611031200000000000" in revoke
    assert "finance decision" in revoke
    assert by_key[b"pi-poison-1"]["dlq-error-class"] == "poison"
    assert by_key[b"pi-poison-2"]["dlq-error-type"] == "unknown_schema_version"
    original = dict(poison)
    assert {r.value for r in dead if r.key in original} == set(original.values())

    port = running.port  # type: ignore[attr-defined]
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        ready = await client.get(f"http://127.0.0.1:{port}/readyz")
    assert ready.status_code == 200
    assert 'dingdee_transformer_skipped_total{flow="petty-cash",reason="duplicate"} 1.0' in metrics
