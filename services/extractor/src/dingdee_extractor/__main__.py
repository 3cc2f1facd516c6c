"""``dingdee-extractor`` / ``python -m dingdee_extractor``: settings, observability, Kafka producer,
then the poll loops; ``… backfill`` reads a flow's history instead."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime
from typing import Annotated

import typer
from prometheus_client import CollectorRegistry

from dingdee_common.errors import FatalError
from dingdee_common.kafka.clients import make_producer
from dingdee_common.observability.logging import configure_logging, get_logger
from dingdee_common.observability.server import Health, OpsServer
from dingdee_common.observability.tracing import configure_tracing, shutdown_tracing
from dingdee_common.runtime import install_stop_handlers, settings_or_exit
from dingdee_common.settings import masked
from dingdee_extractor.app import ExtractorApp
from dingdee_extractor.backfill import BackfillArgs, run_backfill
from dingdee_extractor.dingtalk.client import DingTalkClient
from dingdee_extractor.doctor import startup_check
from dingdee_extractor.flows import load_sources
from dingdee_extractor.metrics import ExtractorMetrics
from dingdee_extractor.settings import ExtractorSettings

__all__ = ["main"]

SERVICE = "extractor"


async def _run(backfill: BackfillArgs | None) -> int:
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


app = typer.Typer(
    name="dingdee-extractor",
    add_completion=False,
    rich_markup_mode="markdown",  # a docstring's paragraphs are re-wrapped, not cut at its lines
    pretty_exceptions_show_locals=False,
)
_DAY = ["%Y-%m-%d"]


@app.callback(invoke_without_command=True)
def serve(ctx: typer.Context) -> None:
    """DingTalk approvals (events + polling) → Kafka approvals.raw.

    Without a command: run the extractor until SIGTERM/SIGINT; exit codes 0 on a clean stop,
    1 fatal, 2 bad configuration. Settings come from the `DINGDEE_*` environment (README).
    """
    if ctx.invoked_subcommand is None:
        raise typer.Exit(asyncio.run(_run(None)))


@app.command()
def backfill(
    flow: Annotated[str, typer.Option(help="flow id from flows.yaml")],
    start: Annotated[
        datetime, typer.Option("--from", formats=_DAY, help="first day to read (flow timezone)")
    ],
    end: Annotated[
        datetime | None,
        typer.Option("--to", formats=_DAY, help="first day not to read [default: now]"),
    ] = None,
    chunk_days: Annotated[float, typer.Option(min=0.001, help="days per listids window")] = 1.0,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow/--no-follow",
            help="after the history, keep re-fetching its open instances until they finish",
        ),
    ] = True,
) -> None:
    """Read one flow's history, chunked and resumable, beside live polling.

    Progress is checkpointed under `backfill:<flow>` after every acknowledged chunk: a killed
    backfill resumes where it stopped. Exit codes: 0 done, 130 stopped early, 1 fatal,
    2 bad configuration.
    """
    args = BackfillArgs(
        flow=flow,
        start=start.date(),
        end=end.date() if end else None,
        chunk_days=chunk_days,
        no_follow=not follow,
    )
    raise typer.Exit(asyncio.run(_run(args)))


def main() -> None:
    """The ``dingdee-extractor`` command (``--help`` lists what it does)."""
    app(prog_name="dingdee-extractor")


if __name__ == "__main__":
    main()
