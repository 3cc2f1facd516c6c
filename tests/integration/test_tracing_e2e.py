"""One approval is one trace across the three services, and no secret leaks into telemetry.

The services run as separate processes exporting spans over real OTLP/HTTP to a small collector
this test serves on 127.0.0.1; Kafka headers, logs and metrics are read from the real run.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from dingdee_common.kafka import headers as hdr
from dingdee_dev.stack import _KINGDEE_DEMO, Stack, StackConfig
from dingdee_dev.watch import expected_bills
from tests.helpers import demo_flows_file, poll_until, read_topic
from tests.otlp import Collected, start_collector

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


SECRETS = (_KINGDEE_DEMO["APP_SECRET"],)


def read_logs(workdir: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in workdir.glob("*.log"))


async def test_one_trace_per_approval_and_no_secret_in_telemetry(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    from dingdee_sandbox.demo_org import DEMO_APP

    collected = Collected()
    runner, port = await start_collector(collected)
    config = StackConfig(
        workdir=tmp_path,
        flows_file=demo_flows_file(),
        demo=40,
        seed=3,
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"tr{tmp_path.name[-6:]}.",
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "DINGDEE_TELEMETRY__LOG_LEVEL": "DEBUG",
        },
    )
    secrets = (*SECRETS, DEMO_APP.app_secret)
    try:
        async with Stack(config) as stack:
            expectation = await expected_bills(stack)
            wanted = expectation.by_form["ER_ExpReimbursement"]

            async def loaded() -> bool:
                bills = await stack.kingdee_bills("ER_ExpReimbursement")
                return {str(b["number"]) for b in bills} >= wanted

            await poll_until(loaded, timeout=240, what="petty-cash bills in Kingdee")
            metrics = await scrape_all(stack)
            headers = await read_headers(stack)

            def services_in_traces() -> set[frozenset[str]]:
                return {
                    frozenset(str(s["service"]) for s in spans)
                    for spans in collected.by_trace().values()
                }

            full = frozenset({"dingdee-extractor", "dingdee-transformer", "dingdee-loader"})

            def enough() -> bool:
                complete = [t for t in services_in_traces() if t >= full]
                return len(complete) > 0 and len(collected.spans) > 3 * len(wanted)

            await poll_until(enough, timeout=30, what="spans from all three services")
            await asyncio.sleep(1.0)
            logs = await asyncio.to_thread(read_logs, tmp_path)
    finally:
        await runner.cleanup()

    raw_traces, ready_traces = headers
    assert ready_traces, "no bills.ready records read"
    for source_id, trace_id in ready_traces.items():
        assert raw_traces.get(source_id) == trace_id, f"{source_id}: trace broken between hops"
    traces = collected.by_trace()
    all_three = {"dingdee-extractor", "dingdee-transformer", "dingdee-loader"}
    sample = sorted(ready_traces.values())[:10]
    for trace_id in sample:
        services = {str(s["service"]) for s in traces.get(trace_id, [])}
        assert services == all_three, f"trace {trace_id} has spans only from {services}"
    linked = {tid for s in collected.spans for tid in s["links"]}  # type: ignore[attr-defined]
    assert set(sample) <= linked, "the loader's batch span must link every record it wrote"

    telemetry = "\n".join([logs, metrics, repr(headers), repr(collected.spans)])
    for secret in secrets:
        assert secret not in telemetry, "a secret from the settings leaked into telemetry"


async def scrape_all(stack: Stack) -> str:
    async with httpx.AsyncClient() as client:
        bodies = [
            (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            for port in stack.ops_ports.values()
        ]
    return "\n".join(bodies)


def trace_id_of(headers: list[tuple[str, bytes]]) -> str:
    traceparent = hdr.get(headers, "traceparent")
    assert traceparent, f"message without traceparent: {headers}"
    return traceparent.split("-")[1]


async def read_headers(stack: Stack) -> tuple[dict[str, str], dict[str, str]]:
    """Trace id per source id on approvals.raw and on bills.ready (also checked for secrets)."""
    t = stack.topics
    result: list[dict[str, str]] = []
    for topic in (t.approvals_raw, t.bills_ready):
        seen: dict[str, str] = {}
        for m in await read_topic(stack.kafka, topic):
            source = hdr.get(m.headers, hdr.SOURCE_ID)
            assert source, f"{topic} record without {hdr.SOURCE_ID}"
            seen[source] = trace_id_of(list(m.headers))
        result.append(seen)
    return result[0], result[1]
