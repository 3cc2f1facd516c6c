"""``python -m dingdee_transformer``: build settings and observability, then run the faust worker.

STYLE §9: faust owns the worker loop (and its SIGTERM/SIGINT handling, which stops the batch loop,
flushes the producer and commits acked offsets), so this module only prepares what it needs.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import faust
from prometheus_client import CollectorRegistry

from dingdee_common.errors import FatalError
from dingdee_common.flows import load_flows
from dingdee_common.observability.logging import configure_logging, get_logger
from dingdee_common.observability.server import Health, OpsServer
from dingdee_common.observability.tracing import configure_tracing, shutdown_tracing
from dingdee_common.runtime import settings_or_exit
from dingdee_common.settings import masked
from dingdee_transformer.app import TransformerApp
from dingdee_transformer.flowspec import load_compiled
from dingdee_transformer.metrics import TransformerMetrics
from dingdee_transformer.refstore import RefStore
from dingdee_transformer.settings import TransformerSettings

SERVICE = "transformer"


def main() -> int:
    """Run the transformer until SIGTERM/SIGINT; 0 on a clean stop, 1 on a fatal error."""

    settings = settings_or_exit(TransformerSettings, SERVICE)
    configure_logging(SERVICE, settings.telemetry)
    log = get_logger(__name__)
    configure_tracing(SERVICE, enabled=settings.telemetry.tracing_enabled)
    try:
        store = RefStore(load_flows(settings.flows_file).references())
        flows = load_compiled(settings.flows_file, store)
    except FatalError as exc:
        print(f"{SERVICE}: {exc.message}", file=sys.stderr)
        return 2
    log.info("transformer.starting", settings=masked(settings), flows=sorted(flows))
    registry = CollectorRegistry()
    health = Health(stale_after=settings.http.ready_stale_seconds)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    ops = OpsServer(settings.http, registry, health)
    loop.run_until_complete(ops.start())
    service = TransformerApp(
        settings, flows, TransformerMetrics.create(registry), health, store=store
    )
    # faust's worker sets logging up again at start: keep the root level and JSON handler that
    # configure_logging installed instead of its colour handler
    service.app.conf.loghandlers = list(logging.root.handlers)
    worker = faust.Worker(
        service.app,
        loop=loop,
        logging_config={
            "version": 1,
            "disable_existing_loggers": False,
            "root": {"level": logging.root.level},
        },
        quiet=True,
        redirect_stdouts=False,
    )
    worker.spinner = None  # no terminal escape codes in the JSON log stream
    code = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        if service.fatal is not None:
            code = 1
        service.stopped.set()
        if not loop.is_closed():
            loop.run_until_complete(ops.stop())
        shutdown_tracing()
        log.info("transformer.stopped", exit_code=code)
    return code


if __name__ == "__main__":
    sys.exit(main())
