"""The parking lot on in-memory fakes (issue #14): what it writes, when it retries, when it
gives up, and that one new hire's many claims ask for one refresh."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry

from dingdee_common.kafka.dlq import DeadLetterPublisher, SourceRecord
from dingdee_common.kafka.topics import Topics
from dingdee_common.refdata import decode_request
from dingdee_transformer.metrics import TransformerMetrics
from dingdee_transformer.parking import ParkingLot
from dingdee_transformer.pipeline import Parked
from dingdee_transformer.settings import ParkingSettings

TOPICS = Topics("t.")


class Sent:
    def __init__(self) -> None:
        self.records: list[tuple[str, Any, Any, Any]] = []

    async def send(self, topic: str, value: Any = None, key: Any = None, **kw: Any) -> Any:
        self.records.append((topic, key, value, kw.get("headers")))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    async def send_and_wait(self, topic: str, value: Any = None, key: Any = None, **kw: Any) -> Any:
        return await (await self.send(topic, value=value, key=key, **kw))

    def to(self, topic: str) -> list[tuple[str, Any, Any, Any]]:
        return [r for r in self.records if r[0] == topic]


class Clock:
    now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def lot(**settings: Any) -> tuple[ParkingLot, Sent, Clock, TransformerMetrics]:
    sent, clock = Sent(), Clock()
    metrics = TransformerMetrics.create(CollectorRegistry())
    dlq = DeadLetterPublisher(sent, TOPICS, "transformer")
    parking = ParkingLot(
        ParkingSettings(**settings), sent, dlq, metrics,
        (TOPICS.approvals_raw, TOPICS.parked, TOPICS.refdata_requests), clock=clock,
    )  # fmt: skip
    return parking, sent, clock, metrics


def record(pid: str, offset: int = 7) -> SourceRecord:
    return SourceRecord(TOPICS.approvals_raw, 2, offset, pid.encode(), b'{"v": 1}', (("h", b"1"),))


def parked(pid: str, key: str = "u3", source: str = "kingdee_employees") -> Parked:
    return Parked("petty-cash", pid, ((source, key),), f"员工 {key} is not in Kingdee BD_Empinfo")


async def test_parking_writes_the_record_byte_for_byte_and_one_request_per_hire() -> None:
    parking, sent, _, metrics = lot()
    for n in range(1000):  # 1 000 claims of one new hire
        await parking.park(record(f"p{n}"), parked(f"p{n}"))
    [first, *_] = sent.to(TOPICS.parked)
    assert first[1:3] == (b"p0", b'{"v": 1}') and ("h", b"1") in first[3]
    requests = [decode_request(r[2]) for r in sent.to(TOPICS.refdata_requests)]
    assert [(r.source, r.key) for r in requests] == [("kingdee_employees", "u3")]
    assert len(parking.entries) == 1000
    assert metrics.parked.labels("kingdee_employees")._value.get() == 1000


async def test_a_change_requeues_only_the_records_waiting_for_that_source_once() -> None:
    parking, sent, _, _ = lot()
    await parking.park(record("a"), parked("a"))
    await parking.park(record("b"), parked("b", "x", "dingtalk_users"))
    parking.changed("kingdee_employees")
    parking.changed("kingdee_employees")
    await parking._requeue()
    await parking._requeue()
    raw = sent.to(TOPICS.approvals_raw)
    assert [r[1] for r in raw] == [b"a"]
    headers = dict(raw[0][3])
    assert headers["dingdee-parked-partition"] == b"2" and headers["dingdee-parked-offset"] == b"7"


async def test_a_row_that_arrives_while_a_record_is_being_parked_still_retries_it() -> None:
    parking, sent, _, _ = lot()
    outcome = parked("a")  # mapped (and missed) before the row arrived
    parking.changed("kingdee_employees")  # the row arrives before the park is recorded
    await parking.park(record("a"), outcome)
    assert parking.wake.is_set()
    await parking._requeue()
    assert [r[1] for r in sent.to(TOPICS.approvals_raw)] == [b"a"]


async def test_parking_again_keeps_the_first_time_and_the_original_coordinates() -> None:
    parking, sent, clock, _ = lot()
    await parking.park(record("a"), parked("a"))
    first = parking.entries[b"a"].first_at
    clock.now += 600
    [(_, key, value, headers)] = sent.to(TOPICS.parked)
    again = SourceRecord(TOPICS.approvals_raw, 2, 99, key, value, tuple(headers))
    await parking.park(again, parked("a"))
    entry = parking.entries[b"a"]
    assert (entry.first_at, entry.offset) == (first, 7)


async def test_past_the_limit_a_record_is_dead_lettered_with_its_reason_and_forgotten() -> None:
    parking, sent, clock, _ = lot(limit_seconds=3600)
    await parking.park(record("a"), parked("a"))
    clock.now += 1800
    await parking._expire()
    assert not sent.to(TOPICS.dlq("transformer"))
    clock.now += 1801
    await parking._expire()
    [(_, key, value, headers)] = sent.to(TOPICS.dlq("transformer"))
    h = dict(headers)
    assert (key, value) == (b"a", b'{"v": 1}')
    assert h["dlq-original-topic"] == TOPICS.approvals_raw.encode()
    assert h["dlq-error-type"] == b"reference_missing"
    assert "is not in Kingdee BD_Empinfo (waited 1.0 h)" in h["dlq-error-message"].decode()
    assert not parking.entries and sent.to(TOPICS.parked)[-1][1:3] == (b"a", None)


async def test_the_lot_is_rebuilt_from_its_topic_and_bounded() -> None:
    parking, sent, _, _ = lot(max_records=2)
    await parking.park(record("a"), parked("a"))
    await parking.park(record("b"), parked("b"))
    assert parking.full()
    await parking.release(b"a")
    rebuilt, _, _, _ = lot()
    for _, key, value, headers in sent.to(TOPICS.parked):
        rebuilt.load(key, value, headers)
    assert list(rebuilt.entries) == [b"b"]
    assert rebuilt.entries[b"b"].waits == (("kingdee_employees", "u3"),)
    # reading back its own write does not make the lot forget when the record was mapped
    mapped_at = parking.entries[b"b"].mapped_at
    for _, key, value, headers in sent.to(TOPICS.parked):
        parking.load(key, value, headers)
    assert parking.entries[b"b"].mapped_at == mapped_at > 0
