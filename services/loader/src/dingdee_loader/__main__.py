"""``python -m dingdee_loader``: settings, observability, Kafka clients, then the consume loop."""

from __future__ import annotations

import asyncio
import contextlib
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import CollectorRegistry

from dingdee_common.errors import FatalError
from dingdee_common.flows import load_flows
from dingdee_common.kafka.clients import make_consumer, make_producer
from dingdee_common.kafka.topics import Topics
from dingdee_common.observability.logging import configure_logging, get_logger
from dingdee_common.observability.server import Health, OpsServer
from dingdee_common.observability.tracing import configure_tracing, shutdown_tracing
from dingdee_common.refdata import SourceSpec
from dingdee_common.runtime import install_stop_handlers, settings_or_exit
from dingdee_common.settings import masked
from dingdee_loader.app import LoaderApp
from dingdee_loader.attachments import AttachmentWorker
from dingdee_loader.doctor import startup_check
from dingdee_loader.kingdee.client import KingdeeClient
from dingdee_loader.metrics import LoaderMetrics
from dingdee_loader.refresh import Refresher
from dingdee_loader.settings import LoaderSettings

__all__ = ["main"]

SERVICE = "loader"


async def _run() -> int:
    settings = settings_or_exit(LoaderSettings, SERVICE)
    configure_logging(SERVICE, settings.telemetry)
    log = get_logger(__name__)
    configure_tracing(SERVICE, enabled=settings.telemetry.tracing_enabled)
    log.info("loader.starting", settings=masked(settings))
    registry = CollectorRegistry()
    metrics = LoaderMetrics.create(registry)
    health = Health(stale_after=settings.http.ready_stale_seconds)
    ops = OpsServer(settings.http, registry, health)
    await ops.start()
    stop = asyncio.Event()
    install_stop_handlers(stop)
    producer = make_producer(settings.kafka)
    consumer = make_consumer(
        settings.kafka,
        group_id=settings.group_id,
        max_poll_records=settings.max_pending_records,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=max(settings.session_timeout_ms // 5, 500),
    )
    client = KingdeeClient(settings.kingdee, metrics)
    app = LoaderApp(settings, metrics, health, consumer, producer, client)
    code = 0
    try:
        await _serve(settings, app, consumer, producer, client, stop)
    except FatalError as exc:
        log.error("loader.fatal", error=str(exc))
        code = 1
    except Exception as exc:  # last resort: log it, exit non-zero, get restarted
        log.exception("loader.crashed", error_type=type(exc).__name__, error=str(exc))
        code = 1
    finally:
        await consumer.stop()
        await producer.stop()
        await ops.stop()
        shutdown_tracing()
        log.info("loader.stopped", exit_code=code)
    return code


async def _serve(
    settings: LoaderSettings,
    app: LoaderApp,
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    client: KingdeeClient,
    stop: asyncio.Event,
) -> None:
    """Load bills until ``stop``, with the reference-data refresher and the attachment worker."""
    refresher = Refresher(settings, client, producer, app.lanes, _kingdee_sources(settings))
    app.settler.saved_hooks.append(refresher.saved)
    # before Kafka: while Kingdee refuses the login, wait not ready (no bill is touched)
    if not await startup_check(settings.kingdee, app.health, stop):
        return
    await producer.start()
    await consumer.start()
    consumer.subscribe([app.topics.bills_ready], listener=app.listener)
    refreshing = asyncio.create_task(refresher.run(stop))
    try:
        attachments = attachment_worker(settings, app, client, producer, app.metrics)  # issue #18
        await asyncio.gather(app.run(stop), *[w.run(stop) for w in attachments])
    finally:
        refreshing.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await refreshing


def attachment_worker(
    settings: LoaderSettings,
    app: LoaderApp,
    client: KingdeeClient,
    producer: AIOKafkaProducer,
    metrics: LoaderMetrics,
) -> list[AttachmentWorker]:
    """The attachment uploader on the loader's lanes (none when switched off)."""
    if not settings.attachments.enabled:
        return []
    topics = Topics(settings.kafka.topic_prefix)
    consumer = make_consumer(  # subscribed by the worker, with its rebalance listener
        settings.kafka,
        group_id=f"{settings.group_id}-attachments",
        max_poll_records=1,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=max(settings.session_timeout_ms // 5, 500),
    )
    return [
        AttachmentWorker(
            client,
            app.lanes,
            consumer,
            producer,
            topics,
            metrics.followups,
            settings.retry,
            settings.attachments.chunk_bytes,
        )
    ]


def _kingdee_sources(settings: LoaderSettings) -> dict[str, SourceSpec]:
    """The Kingdee reference sources of ``flows.yaml`` (none when the file is absent)."""
    if not settings.flows_file.exists():
        return {}
    return load_flows(settings.flows_file).references().owned_by("loader")


def main() -> int:
    """Run the loader until SIGTERM/SIGINT; 0 on a clean stop, 1 on a fatal error."""
    return asyncio.run(_run())


if __name__ == "__main__":
    sys.exit(main())
