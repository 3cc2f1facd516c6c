"""The transformer waits for the first completed refresh of every live source its lookups read
(issue #14, a fresh deploy): the owner's marker row ends the wait; without it the wait ends at its
limit with a warning, and the parking lot hears changes only once the wait is over."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from dingdee_common.flows import load_flows
from dingdee_common.kafka.topics import Topics
from dingdee_common.refdata import RefRow, encode_row
from dingdee_common.refpublish import MARKER_KEY
from dingdee_common.settings import KafkaSettings
from dingdee_transformer.metrics import TransformerMetrics
from dingdee_transformer.refstore import RefStore
from dingdee_transformer.refsync import RefReader
from dingdee_transformer.settings import TransformerSettings

ROOT = Path(__file__).resolve().parents[3]
TOPICS = Topics("t.")
LIVE = ["dingtalk_departments", "dingtalk_users", "kingdee_departments", "kingdee_employees",
        "kingdee_expense_items"]  # fmt: skip


class Lot:
    def __init__(self) -> None:
        self.requeued = 0

    def changed(self, source: str) -> None: ...

    def requeue_all(self) -> None:
        self.requeued += 1


def reader() -> tuple[RefReader, Lot, TransformerMetrics]:
    store = RefStore(load_flows(ROOT / "config" / "flows.yaml").references())
    lot, metrics = Lot(), TransformerMetrics.create(CollectorRegistry())
    refs = RefReader(KafkaSettings(), TOPICS, store, lot, metrics)  # type: ignore[arg-type]
    return refs, lot, metrics


def marker(refs: RefReader, source: str) -> None:
    row = RefRow(source=source, key=MARKER_KEY, fields={"rows": "3", "at": "1.0"}, origin="t")
    refs._apply(source, MARKER_KEY.encode(), encode_row(row))


def test_the_sources_waited_for_are_those_a_lookup_reads() -> None:
    refs, _, _ = reader()
    assert refs.needed == LIVE
    marker(refs, "kingdee_employees")
    assert refs.unrefreshed() == [s for s in LIVE if s != "kingdee_employees"]


async def test_the_wait_ends_when_the_last_marker_arrives() -> None:
    refs, lot, metrics = reader()
    for source in LIVE[1:]:
        marker(refs, source)
    reasons: list[str] = []
    waiting = asyncio.create_task(refs.first_refresh(60.0, reasons.append))
    await asyncio.sleep(0.1)
    assert not waiting.done() and lot.requeued == 0 and refs.store.listeners == []
    assert reasons == ["waiting for the first refresh of t.refdata.dingtalk_departments"]
    refs._gauges()
    assert metrics.refdata_unrefreshed.labels("dingtalk_departments")._value.get() == 1
    assert metrics.refdata_unrefreshed.labels("dingtalk_users")._value.get() == 0
    started = time.monotonic()
    marker(refs, "dingtalk_departments")
    assert await asyncio.wait_for(waiting, 5) is True
    assert time.monotonic() - started < 1.0
    assert lot.requeued == 1 and refs.store.listeners == [lot.changed]
    refs._gauges()
    assert metrics.refdata_unrefreshed.labels("dingtalk_departments")._value.get() == 0


async def test_past_its_limit_the_wait_ends_with_a_warning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    refs, lot, metrics = reader()
    marker(refs, "kingdee_employees")
    reasons: list[str] = []
    started = time.monotonic()
    assert await refs.first_refresh(0.3, reasons.append) is False
    assert 0.25 < time.monotonic() - started < 2.0
    assert reasons and "t.refdata.kingdee_departments" in reasons[0]
    assert "t.refdata.kingdee_employees" not in reasons[0]
    assert lot.requeued == 1 and refs.store.listeners == [lot.changed]  # maps anyway
    assert "transformer.refdata.first_refresh_timeout" in capsys.readouterr().out
    refs._gauges()  # the sources still unrefreshed stay visible
    assert metrics.refdata_unrefreshed.labels("dingtalk_users")._value.get() == 1


async def test_no_wait_when_the_limit_is_zero_or_every_source_has_a_marker() -> None:
    refs, lot, _ = reader()
    assert await refs.first_refresh(0.0, lambda _: None) is False and lot.requeued == 1
    refs, lot, _ = reader()
    for source in LIVE:
        marker(refs, source)
    reasons: list[str] = []
    assert await refs.first_refresh(60.0, reasons.append) is True
    assert reasons == [] and lot.requeued == 1


def test_the_limit_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert TransformerSettings().refdata.first_refresh_timeout_seconds == 240.0
    monkeypatch.setenv("DINGDEE_REFDATA__FIRST_REFRESH_TIMEOUT_SECONDS", "0")
    assert TransformerSettings().refdata.first_refresh_timeout_seconds == 0.0
