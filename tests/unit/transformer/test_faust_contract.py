"""The faust, mode and aiokafka private behaviour ``faust_adapter`` relies on, held to the pins.

One test per behaviour the adapter's docstring lists, so an upgrade that changes one fails here
rather than in production. Those that need a running consumer or producer (the fetch wait read at
start, ``_ensure_producer``, the coordination and fetch tasks, the stall detector) are held by
``tests/integration/test_transformer_faust_contract.py``, ``test_transformer_consumer_watch.py``
and ``test_transformer_stall_detector.py``.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import faust.transport.consumer
import mode
import pytest
from aiokafka.structs import ConsumerRecord
from faust.types import TP

from dingdee_common.settings import KafkaSettings
from dingdee_transformer.faust_adapter import (
    TransformerConsumer,
    install_consumer,
    table_store,
)
from dingdee_transformer.intake import FetchIntake

ROOT = Path(__file__).resolve().parents[3]
TOPIC = "approvals.raw"
P0 = TP(TOPIC, 0)


def _app(name: str) -> faust.App:
    app = faust.App(name, autodiscover=False, store="memory://", broker_commit_every=3)
    intake = FetchIntake(TOPIC, generation=lambda: 1, taken=lambda _: None)
    install_consumer(app, KafkaSettings(), intake)
    app.topics.add(app.topic(TOPIC, key_serializer="raw", value_serializer="raw"))
    return app


def _record(offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=TOPIC,
        partition=0,
        offset=offset,
        timestamp=1_700_000_000_123,
        timestamp_type=0,
        key=b"k",
        value=b"v",
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=1,
        headers=[("h", b"1")],
    )


def test_the_transformer_pins_exactly_what_constraints_txt_pins() -> None:
    deps = tomllib.loads((ROOT / "services/transformer/pyproject.toml").read_text())["project"]
    pinned = {d for d in deps["dependencies"] if "==" in d}
    constraints = set((ROOT / "constraints.txt").read_text().splitlines())
    assert {re.split("==", p)[0] for p in pinned} == {
        "aiokafka",
        "faust-streaming",
        "mode-streaming",
    }
    assert pinned <= constraints


async def test_the_app_builds_the_transformer_consumer() -> None:
    """Replacing ``app.transport`` before first use is how faust takes our consumer class."""
    app = _app("contract-transport")
    assert isinstance(app.consumer, TransformerConsumer)


async def test_to_message_makes_a_faust_message_of_the_current_generation() -> None:
    app = _app("contract-to-message")
    app.consumer_generation_id = 7
    message = app.consumer._to_message(P0, _record(42))  # type: ignore[attr-defined]
    assert (message.tp, message.offset, message.key, message.value) == (P0, 42, b"k", b"v")
    assert message.timestamp == pytest.approx(1_700_000_000.123)
    assert message.headers == [("h", b"1")]
    assert message.generation_id == 7


async def test_acks_count_towards_commit_every_and_gaps_count_as_acked() -> None:
    """``_n_acked``/``_commit_every``: the commit trigger; ``_add_gap``: offsets gone count."""
    app = _app("contract-acks")
    await app.topics._update_indices()  # type: ignore[attr-defined]  # as the conductor does
    assert app.topics.acks_enabled_for(TOPIC), "acks of a subscribed topic's records count"
    consumer: Any = app.consumer
    assert consumer._commit_every == 3
    assert consumer._n_acked == 0
    consumer.ack(consumer._to_message(P0, _record(0)))
    assert consumer._n_acked == 1
    await consumer._add_gap(P0, 1, 4)
    consumer.ack(consumer._to_message(P0, _record(5)))
    assert consumer._n_acked == 2
    assert consumer._new_offset(P0) == 6, "the gap 1..4 lets the commit move past it"


async def test_read_offset_and_buffered_partitions_start_empty() -> None:
    consumer: Any = _app("contract-state").consumer
    assert consumer._read_offset[P0] is None, "a defaultdict: unknown partitions read as None"
    assert consumer._buffered_partitions == set()


async def test_wait_next_records_takes_a_timeout_and_returns_records_and_active() -> None:
    """Its result is what the override unpacks; fetching itself runs in the integration tests."""
    wait = faust.transport.consumer.Consumer._wait_next_records
    assert list(inspect.signature(wait).parameters) == ["self", "timeout"]
    assert inspect.iscoroutinefunction(wait)


async def test_faust_fetcher_runs_the_consumer_drain_messages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """faust's ``Fetcher`` service is what calls the overridden delivery loop."""
    app = _app("contract-fetcher")
    called: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def drain(fetcher: Any) -> None:
        called.set_result(fetcher)

    monkeypatch.setattr(app.consumer, "_drain_messages", drain)
    fetcher = faust.transport.consumer.Fetcher(app)
    await fetcher.start()
    try:
        assert await asyncio.wait_for(called, 5) is fetcher
    finally:
        await fetcher.stop()


async def test_mode_sets_stopped_when_a_service_stops() -> None:
    """The delivery loop's exit condition, for the consumer and the fetcher alike."""
    service = mode.Service()
    await service.start()
    assert not service._stopped.is_set()
    await service.stop()
    assert service._stopped.is_set()


async def test_the_table_store_dict_is_what_the_table_reads_and_recovery_fills() -> None:
    app = _app("contract-store")
    table = app.Table("seen", default=None, key_type=bytes, value_type=None)
    store = table_store(table)
    store[b"written"] = {"bill_key": "B1"}
    assert table.data[b"written"] == {"bill_key": "B1"}
    recovered = SimpleNamespace(key=b"restored", value={"bill_key": "B2"})
    recovered.message = SimpleNamespace(value=b"{}", partition=0)
    table.data.apply_changelog_batch([recovered], lambda k: k, lambda v: v)  # type: ignore[attr-defined]
    assert store[b"restored"] == {"bill_key": "B2"}
