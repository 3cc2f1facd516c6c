"""Transformer throughput against a raw aiokafka consume→produce pass-through on the same data.

Both read the same backlog of N approval snapshots from one ``approvals.raw`` and write one record
per input; both commit offsets only after their output was acked. Throughput is measured on the
output side as N / (last − first output timestamp), so start-up (faust's ~30 s group join on Tansu)
does not count. Also prints the transformer process's peak RSS (VmHWM).

The transformer runs twice: as deployed without a trace collector (no spans recorded; trace
context still propagated), and with ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at a local sink, so
every record's span is recorded and exported as in production (to the tests' OTLP collector).

Run: ``.venv/bin/python -m bench transformer`` (``BENCH_TRANSFORMER_N`` records, default 20000;
at 5000 a single slow fetch moves the ratio by a third).
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from tests.helpers import demo_flows_file
from tests.otlp import Collected, start_collector
from tests.unit.transformer.samples import petty_form, petty_row, snapshot

from dingdee_common.codec import encode_model
from dingdee_common.kafka import headers as hdr
from dingdee_common.kafka.clients import make_consumer, make_producer
from dingdee_common.kafka.topics import Topics, provision
from dingdee_common.settings import KafkaSettings
from dingdee_dev.broker import ENV_BOOTSTRAP, EmbeddedBroker, free_port
from dingdee_dev.procs import ManagedProcess

ROOT = Path(__file__).resolve().parents[1]
GOAL = 0.35


Item = tuple[bytes, bytes, hdr.Headers]


def _snapshots(n: int) -> list[Item]:
    """``n`` approvals as the extractor writes them: key, value and its headers (flow, source
    id and a ``traceparent``, which the transformer passes on to the bill)."""
    rows = [petty_row("打印纸", "办公用品", "320.00"), petty_row("高铁票", "差旅费", "1,204.50")]
    form = petty_form(rows, total="1524.50")
    out = []
    for i in range(n):
        snap = snapshot(
            form=form, business_id=f"2026110312{i:011d}", pid=f"bench-{i}", fingerprint=f"fp{i}"
        )
        pid = snap.process_instance_id
        out.append((pid.encode(), encode_model(snap), hdr.build(snap.flow, pid)))
    return out


async def _produce(kafka: KafkaSettings, topic: str, items: list[Item]) -> None:
    producer = make_producer(kafka)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=v, key=k, headers=h) for k, v, h in items]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _passthrough(kafka: KafkaSettings, source: str, sink: str, n: int) -> None:
    """The baseline: consume, produce the same bytes, wait for the acks, commit; until n records."""
    consumer = make_consumer(kafka, source, group_id=f"bench-{uuid.uuid4().hex[:8]}")
    producer = make_producer(kafka)
    await consumer.start()
    await producer.start()
    done = 0
    try:
        while done < n:
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            futures = []
            for records in batch.values():
                for r in records:
                    sent = await producer.send(
                        sink, value=r.value, key=r.key, headers=list(r.headers)
                    )
                    futures.append(sent)
            await asyncio.gather(*futures)
            if futures:
                await consumer.commit()
            done += len(futures)
    finally:
        await producer.stop()
        await consumer.stop()


async def _output_rate(kafka: KafkaSettings, topic: str, n: int, timeout: float) -> float:
    """Records per second on ``topic``, from its first to its n-th record's timestamp."""
    consumer: AIOKafkaConsumer = make_consumer(kafka, topic, group_id=None)
    await consumer.start()
    stamps: list[int] = []
    deadline = time.monotonic() + timeout
    try:
        while len(stamps) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(stamps)} of {n} records arrived on {topic}")
            for records in (await consumer.getmany(timeout_ms=500)).values():
                stamps.extend(r.timestamp for r in records)
    finally:
        await consumer.stop()
    stamps.sort()
    span = max((stamps[n - 1] - stamps[0]) / 1000, 1e-3)
    return (n - 1) / span


def _peak_rss_mb(pid: int | None) -> float:
    if pid is None:
        return float("nan")
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _transformer_rate(
    kafka: KafkaSettings, n: int, logs: Path, env: dict[str, str] | None = None
) -> tuple[float, float]:
    name = "transformer-traced" if env else "transformer"
    proc = ManagedProcess.python_module(
        name,
        "dingdee_transformer",
        env={
            **(env or {}),
            "DINGDEE_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "DINGDEE_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
            "DINGDEE_KAFKA__PARTITIONS": str(kafka.partitions),
            "DINGDEE_FLOWS_FILE": str(demo_flows_file()),
            "DINGDEE_HTTP__PORT": str(free_port()),
            "DINGDEE_HTTP__HOST": "127.0.0.1",
            "DINGDEE_GROUP_ID": f"bench-transformer-{uuid.uuid4().hex[:6]}",
            "DINGDEE_TELEMETRY__LOG_LEVEL": "WARNING",
            "DINGDEE_FLOOD_GUARD__ENABLED": "false",
            # no loader or extractor publishes reference data here: the demo tables answer
            "DINGDEE_REFDATA__FIRST_REFRESH_TIMEOUT_SECONDS": "0",
        },
        log_path=logs / f"{name}.log",
        cwd=logs,  # faust creates its data directory here
    )
    proc.start()
    try:
        rate = await _output_rate(kafka, Topics(kafka.topic_prefix).bills_ready, n, timeout=300)
        return rate, _peak_rss_mb(proc.pid)
    finally:
        # In a thread: the trace collector runs on this loop and takes the last spans the
        # transformer exports while it stops (blocking here lost them to an export timeout).
        await asyncio.to_thread(proc.stop)


async def _run(bootstrap: str, n: int, logs: Path) -> None:
    def prefixed(letter: str) -> KafkaSettings:
        return KafkaSettings(
            bootstrap_servers=bootstrap, topic_prefix=f"{letter}{uuid.uuid4().hex[:8]}."
        )

    kafka, traced, sink = prefixed("b"), prefixed("t"), prefixed("p")
    for settings in (kafka, traced, sink):
        await provision(settings)
    source = Topics(kafka.topic_prefix).approvals_raw
    print(f"producing {n} petty-cash snapshots to {source} (and a copy for the traced run) …")
    snapshots = _snapshots(n)
    await _produce(kafka, source, snapshots)
    await _produce(traced, Topics(traced.topic_prefix).approvals_raw, snapshots)

    passthrough = asyncio.create_task(
        _passthrough(kafka, source, Topics(sink.topic_prefix).bills_ready, n)
    )
    baseline = await _output_rate(sink, Topics(sink.topic_prefix).bills_ready, n, timeout=300)
    await passthrough
    print(f"baseline  aiokafka pass-through : {baseline:8.0f} records/s", flush=True)

    rate, rss = await _transformer_rate(kafka, n, logs)
    ratio = rate / baseline
    verdict = "meets" if ratio >= GOAL else "BELOW"
    print(f"transformer (faust, mapping)    : {rate:8.0f} records/s", flush=True)
    print(f"ratio transformer / baseline    : {ratio:8.2f}  ({verdict} the {GOAL} goal)")
    print(f"transformer peak RSS            : {rss:8.1f} MiB", flush=True)

    spans = Collected()
    collector, port = await start_collector(spans)
    try:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}
        traced_rate, traced_rss = await _transformer_rate(traced, n, logs, env)
    finally:
        await collector.cleanup()
    print(f"  with spans exported (OTLP)    : {traced_rate:8.0f} records/s", flush=True)
    print(f"  ratio with spans / baseline   : {traced_rate / baseline:8.2f}")
    print(f"  peak RSS with spans           : {traced_rss:8.1f} MiB")
    print(f"  spans the collector received  : {len(spans.spans):8d} of {n}")
    bench_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"bench process peak RSS          : {bench_rss:8.1f} MiB (baseline ran in here)")


def main() -> None:
    """Run the benchmark once on the embedded broker (or ``DINGDEE_KAFKA__BOOTSTRAP_SERVERS``)."""
    n = int(os.environ.get("BENCH_TRANSFORMER_N", "20000"))
    logs = Path(tempfile.mkdtemp(prefix="bench-transformer-"))
    external = os.environ.get(ENV_BOOTSTRAP)
    if external:
        asyncio.run(_run(external, n, logs))
        return
    with EmbeddedBroker(log_path=logs / "tansu.log") as broker:
        asyncio.run(_run(broker.bootstrap_servers, n, logs))
    print(f"(logs in {logs})", file=sys.stderr)
