"""The extractor's run: settings, observability, Kafka producer, then the poll loops or a backfill.

Started by ``dingdee-extractor`` (``__main__``) as a service, and by the operator CLI's
``dingdee backfill`` to read a flow's history.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from dingdee_common.errors import FatalError
from dingdee_common.flows import load_flows
from dingdee_common.kafka.clients import make_producer
from dingdee_common.observability.logging import configure_logging, get_logger
from dingdee_common.observability.server import Health, OpsServer
from dingdee_common.observability.tracing import configure_tracing, shutdown_tracing
from dingdee_common.runtime import install_stop_handlers, settings_or_exit
from dingdee_common.settings import masked
from dingdee_extractor.app import ExtractorApp
from dingdee_extractor.backfill import BackfillArgs, Progress, backfill_poller, read_history
from dingdee_extractor.contacts import ContactSync
from dingdee_extractor.dingtalk.client import DingTalkClient
from dingdee_extractor.doctor import startup_check
from dingdee_extractor.flows import FlowSource, load_sources
from dingdee_extractor.followups import build_followups
from dingdee_extractor.metrics import ExtractorMetrics
from dingdee_extractor.settings import ExtractorSettings

__all__ = ["SERVICE", "run"]

SERVICE = "extractor"


@dataclass
class _Parts:
    """What a service run and a backfill share: metrics, health, the ops server, the producer and
    the DingTalk client."""

    metrics: ExtractorMetrics
    health: Health
    ops: OpsServer
    producer: AIOKafkaProducer
    client: DingTalkClient

    @classmethod
    def create(cls, settings: ExtractorSettings) -> _Parts:
        registry = CollectorRegistry()
        metrics = ExtractorMetrics.create(registry)
        health = Health(stale_after=settings.http.ready_stale_seconds)
        ops = OpsServer(settings.http, registry, health)
        client = DingTalkClient(settings.dingtalk, metrics)
        return cls(metrics, health, ops, make_producer(settings.kafka), client)

    async def close(self) -> None:
        await self.producer.stop()
        await self.client.aclose()
        await self.ops.stop()


async def run(backfill: BackfillArgs | None = None, progress: Progress | None = None) -> int:
    """Run the extractor until SIGTERM/SIGINT, or with ``backfill`` read one flow's history.

    Returns the exit code: 0 on a clean stop (or a finished backfill), 1 fatal or crashed (an
    exception from any of its tasks, logged as ``extractor.crashed``), 2 bad configuration, 130 a
    backfill stopped early. ``progress`` hears a backfill's progress.
    """
    settings = settings_or_exit(ExtractorSettings, SERVICE)
    configure_logging(SERVICE, settings.telemetry)
    log = get_logger(__name__)
    configure_tracing(SERVICE, enabled=settings.telemetry.tracing_enabled)
    log.info("extractor.starting", settings=masked(settings))
    try:
        sources = load_sources(settings.flows_file, frozenset(settings.dingtalk.apps))
    except FatalError as exc:
        print(f"{SERVICE}: {exc.message}", file=sys.stderr)
        return 2
    parts = _Parts.create(settings)
    await parts.ops.start()
    stop = asyncio.Event()
    install_stop_handlers(stop)
    code = 0
    try:
        if backfill is None:
            await _serve(settings, sources, parts, stop)
        else:
            code = await _backfill(settings, sources, parts, stop, backfill, progress)
    except FatalError as exc:
        log.error("extractor.fatal", error=str(exc))
        code = 1
    except Exception as exc:  # last resort: log it, exit non-zero, get restarted
        log.exception("extractor.crashed", error_type=type(exc).__name__, error=str(exc))
        code = 1
    finally:
        stop.set()  # the tasks still running end at their next look at ``stop``
        await parts.close()
        shutdown_tracing()
        log.info("extractor.stopped", exit_code=code)
    return code


async def _serve(
    settings: ExtractorSettings, sources: list[FlowSource], parts: _Parts, stop: asyncio.Event
) -> None:
    """The service: events and polling, contact sync and the follow-ups until ``stop``."""
    await startup_check(settings, sources, parts.client)  # fail fast, before Kafka
    await parts.producer.start()
    producer, client, metrics = parts.producer, parts.client, parts.metrics
    app = ExtractorApp(settings, sources, producer, client, metrics, parts.health)
    await app.setup()
    followups = await build_followups(settings, producer, client, metrics, app.outage.behind)
    refs = load_flows(settings.flows_file).references().owned_by("extractor")
    contacts = ContactSync(settings, client, producer, refs)
    app.contact_hook = contacts.on_event
    await asyncio.gather(
        app.run(stop), contacts.run(stop), *([followups.run(stop)] if followups else [])
    )


async def _backfill(
    settings: ExtractorSettings,
    sources: list[FlowSource],
    parts: _Parts,
    stop: asyncio.Event,
    backfill: BackfillArgs,
    progress: Progress | None,
) -> int:
    """Read ``backfill.flow``'s history; its exit code."""
    await parts.producer.start()
    source = _source(backfill.flow, sources, settings)
    parts.health.set_ready()
    poller = await backfill_poller(
        backfill, settings, source, parts.producer, parts.client, parts.metrics, progress
    )
    return await read_history(poller, backfill, settings, parts.metrics, parts.health, stop)


def _source(flow: str, sources: list[FlowSource], settings: ExtractorSettings) -> FlowSource:
    """The enabled flow ``flow``.

    Raises:
        FatalError: no enabled flow has that id.
    """
    source = next((s for s in sources if s.flow == flow), None)
    if source is None:
        raise FatalError(f"no enabled flow {flow!r} in {settings.flows_file}")
    return source
