"""``python -m dingdee_extractor``: settings, observability, Kafka producer, then the poll loops."""

from __future__ import annotations

import asyncio
import sys

__all__ = ["main"]

SERVICE = "extractor"


async def _run() -> int:
    from prometheus_client import CollectorRegistry

    from dingdee_common.errors import FatalError
    from dingdee_common.kafka.clients import make_producer
    from dingdee_common.observability.logging import configure_logging, get_logger
    from dingdee_common.observability.server import Health, OpsServer
    from dingdee_common.observability.tracing import configure_tracing, shutdown_tracing
    from dingdee_common.runtime import install_stop_handlers, settings_or_exit
    from dingdee_common.settings import masked
    from dingdee_extractor.app import ExtractorApp
    from dingdee_extractor.dingtalk.client import DingTalkClient
    from dingdee_extractor.flows import load_sources
    from dingdee_extractor.metrics import ExtractorMetrics
    from dingdee_extractor.settings import ExtractorSettings

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
        await producer.start()
        app = ExtractorApp(settings, sources, producer, client, metrics, health)
        await app.setup()
        await app.run(stop)
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


def main() -> int:
    """Run the extractor until SIGTERM/SIGINT; 0 on a clean stop, 1 fatal, 2 bad config."""
    return asyncio.run(_run())


if __name__ == "__main__":
    sys.exit(main())
