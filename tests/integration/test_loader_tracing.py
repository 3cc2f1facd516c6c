"""Loader tracing (STYLE §7): a CONSUMER span per record in the record's trace, one BatchSave span
linking every record it wrote, and the record's trace carried on into ``bills.result``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from dingdee_common.kafka import headers as hdr
from dingdee_common.kafka.clients import make_consumer, make_producer
from dingdee_common.kafka.topics import Topics
from dingdee_common.observability.server import Health
from dingdee_common.observability.tracing import configure_tracing, tracer
from dingdee_common.settings import KafkaSettings
from dingdee_loader.app import LoaderApp
from dingdee_loader.kingdee.client import KingdeeClient
from dingdee_loader.metrics import LoaderMetrics
from dingdee_loader.settings import KingdeeSettings, LoaderSettings
from tests.helpers import poll_until
from tests.integration.test_loader_service import (
    Sandbox,
    make_bills,
    produce,
    read_all,
    sandbox,
)

pytestmark = pytest.mark.integration
__all__ = ["sandbox"]


@pytest.fixture
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    configure_tracing("loader-test", extra_processors=[SimpleSpanProcessor(exporter)])
    return exporter


@pytest.fixture
async def loader(kafka: KafkaSettings, sandbox: Sandbox, group_id: str) -> AsyncIterator[LoaderApp]:
    settings = LoaderSettings(
        kafka=kafka,
        group_id=group_id,
        kingdee=KingdeeSettings(
            server_url=f"{sandbox.url}/k3cloud",
            acct_id="5db25ac8d2b819",
            username="webapi",
            app_id="204399_72epSbtEQMC92Vwt2d3LRa9LRqSc1tqJ",
            app_secret=SecretStr("fb7d46647ac346dbb5fcd45b65512a45"),
        ),
    )
    metrics = LoaderMetrics.create(CollectorRegistry())
    consumer = make_consumer(kafka, group_id=group_id, session_timeout_ms=6000)
    producer = make_producer(kafka)
    app = LoaderApp(
        settings, metrics, Health(), consumer, producer, KingdeeClient(settings.kingdee, metrics)
    )
    await producer.start()
    await consumer.start()
    consumer.subscribe([Topics(kafka.topic_prefix).bills_ready], listener=app.listener)
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    yield app
    stop.set()
    await asyncio.wait_for(task, timeout=30)
    await consumer.stop()
    await producer.stop()


async def test_record_spans_batch_links_and_result_context(
    kafka: KafkaSettings, sandbox: Sandbox, spans: InMemorySpanExporter, loader: LoaderApp
) -> None:
    bills = make_bills(12, 0.0, seed=51)
    traces: dict[str, int] = {}
    for bill in bills.records:  # each bill in its own trace, as the transformer sends them
        with tracer().start_as_current_span("transformer publish"):
            traces[bill.bill_key] = trace.get_current_span().get_span_context().trace_id
            headers = dict(hdr.as_dict(hdr.build(bill.flow, bill.source.process_instance_id)))
            await produce(kafka, [bill], extra_headers={"traceparent": headers["traceparent"]})
    topics = Topics(kafka.topic_prefix)
    await poll_until(lambda: len(sandbox.numbers()) == 12, timeout=60, what="12 bills saved")

    async def results() -> bool:
        return len(await read_all(kafka, topics.bills_result)) >= 12

    await poll_until(results, timeout=30, what="12 results")
    finished = spans.get_finished_spans()
    consumed = [s for s in finished if s.name == f"{topics.bills_ready} process"]
    assert {s.context.trace_id for s in consumed} == set(traces.values())
    assert all(s.kind is trace.SpanKind.CONSUMER for s in consumed)
    batch = [s for s in finished if s.name == "kingdee BatchSave"]
    linked = {link.context.trace_id for s in batch for link in s.links}
    assert linked == set(traces.values()), "the batch span links every record it wrote"
    for record in await read_all(kafka, topics.bills_result):
        parent = hdr.get(record.headers, "traceparent") or ""
        assert int(parent.split("-")[1], 16) == traces[(record.key or b"").decode()]
