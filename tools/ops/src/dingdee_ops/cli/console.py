"""``dingdee console``: serve the web console (settings from ``DINGDEE_CONSOLE__*``)."""

from __future__ import annotations

import asyncio

import typer
from pydantic import ValidationError

from dingdee_common.errors import FatalError
from dingdee_common.observability.logging import configure_logging
from dingdee_ops.console.app import serve
from dingdee_ops.console.settings import ConsoleSettings

__all__ = ["console", "main"]


def console() -> None:
    """Serve the web console: flows, where-is-my-approval, try-a-mapping, dead letters.

    Sign-in: DINGDEE_CONSOLE__AUTH=token (DINGDEE_CONSOLE__TOKEN, opened once as ?token=…) or
    proxy (an OIDC proxy passes the user in X-Forwarded-User/Email/Groups). Pages on
    DINGDEE_CONSOLE__HOST:PORT (127.0.0.1:8080), /healthz and /metrics on DINGDEE_HTTP__PORT.
    """
    try:
        settings = ConsoleSettings()
    except ValidationError as exc:
        for err in exc.errors():
            where = "__".join(str(p) for p in err["loc"]).upper()
            typer.echo(f"DINGDEE_{where}: {err['msg']}", err=True)
        raise typer.Exit(2) from exc
    configure_logging("console", settings.telemetry)
    try:
        asyncio.run(serve(settings))
    except FatalError as exc:
        typer.echo(f"console: {exc}", err=True)
        raise typer.Exit(1) from exc


def main() -> None:
    typer.run(console)
