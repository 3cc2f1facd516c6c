"""``python -m dingdee_extractor``: settings, observability, Kafka producer, then the poll loops."""

from __future__ import annotations

import asyncio
import sys

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
from dingdee_extractor.backfill import parse_args, run_backfill
from dingdee_extractor.contacts import ContactSync
from dingdee_extractor.dingtalk.client import DingTalkClient
from dingdee_extractor.doctor import startup_check
from dingdee_extractor.flows import load_sources
from dingdee_extractor.followups import build_followups
from dingdee_extractor.metrics import ExtractorMetrics
from dingdee_extractor.settings import ExtractorSettings

__all__ = ["main"]

SERVICE = "extractor"


async def _run(argv: list[str]) -> int:
    backfill = parse_args(argv[1:]) if argv[:1] == ["backfill"] else None
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
    registry = CollectorRegistry()
    metrics = ExtractorMetrics.create(registry)
    health = Health(stale_after=settings.http.ready_stale_seconds)
    ops = OpsServer(settings.http, registry, health)
    await ops.start()
    stop = asyncio.Event()
    install_stop_handlers(stop)
    producer = make_producer(settings.kafka)
    client = DingTalkClient(settings.dingtalk, metrics)
    code = 0
    try:
        if backfill is None:
            await startup_check(settings, sources, client)  # fail fast, before Kafka
        await producer.start()
        if backfill is not None:
            source = next((s for s in sources if s.flow == backfill.flow), None)
            if source is None:
                raise FatalError(f"no enabled flow {backfill.flow!r} in {settings.flows_file}")
            health.set_ready()
            code = await run_backfill(
                backfill, settings, source, producer, client, metrics, health, stop
            )
        else:
            app = ExtractorApp(settings, sources, producer, client, metrics, health)
            await app.setup()
            followups = await build_followups(settings, producer, client, metrics)
            refs = load_flows(settings.flows_file).references().owned_by("extractor")
            contacts = ContactSync(settings, client, producer, refs)
            app.contact_hook = contacts.on_event
            await asyncio.gather(
                app.run(stop), contacts.run(stop), *([followups.run(stop)] if followups else [])
            )
    except FatalError as exc:
        log.error("extractor.fatal", error=str(exc))
        code = 1
    finally:
        await producer.stop()
        await client.aclose()
        await ops.stop()
        shutdown_tracing()
        log.info("extractor.stopped", exit_code=code)
    return code


def main(argv: list[str] | None = None) -> int:
    """Run the extractor until SIGTERM/SIGINT; 0 on a clean stop, 1 fatal, 2 bad config.

    ``python -m dingdee_extractor backfill --flow F --from YYYY-MM-DD`` reads history instead.
    """
    return asyncio.run(_run(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
