"""``python -m dingdee_sandbox.dingtalk``: run the DingTalk sandbox on a host and port.

Serves the old host and the v1.0 host on one base URL. Prints ``listening on http://HOST:PORT``
and writes the bound port to ``--port-file`` (so ``--port 0`` works for tests and ``make run``).
Stops cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from dingdee_common.web import serve_until_stopped
from dingdee_sandbox.cli import Host, Port, PortFile, command_line
from dingdee_sandbox.dingtalk.app import create_app
from dingdee_sandbox.dingtalk.state import Faults, State

__all__ = ["app", "main"]

app = command_line("dingdee-sandbox-dingtalk")


@app.command()
def serve(
    host: Host = "127.0.0.1",
    port: Port = 8091,
    port_file: PortFile = None,
    demo: Annotated[int, typer.Option(help="petty-cash approvals to seed (+N/15 dept)")] = 0,
    seed: Annotated[int, typer.Option(help="seed of the demo data")] = 7,
    now_ms: Annotated[int | None, typer.Option(help="start on a manual clock at this time")] = None,
    qps: Annotated[int, typer.Option(help="per (app, API) in a sliding second")] = 20,
    busy_rate: Annotated[float, typer.Option(help="share of -1 系统繁忙 answers")] = 0.0,
    http_500_rate: Annotated[float, typer.Option(help="share of HTTP 500 answers")] = 0.0,
    monthly_quota: Annotated[int | None, typer.Option(help="metered calls per month")] = None,
    fault_seed: Annotated[int, typer.Option(help="seed of the injected faults")] = 0,
) -> None:
    """Run the local DingTalk sandbox (old host and v1.0 host on one base URL).

    Prints `listening on http://HOST:PORT` and runs until SIGTERM/SIGINT; exit code 0 on a clean
    stop, 2 on a bad value.
    """
    try:
        faults = Faults(
            qps=qps,
            busy_rate=busy_rate,
            http_500_rate=http_500_rate,
            monthly_quota=monthly_quota,
            seed=fault_seed,
        )
        state = State(seed=seed, faults=faults, manual_now_ms=now_ms)
        state.seed_demo(demo)
        asyncio.run(serve_until_stopped(create_app(state), host, port, port_file))
    except ValueError as exc:
        typer.echo(f"dingdee_sandbox.dingtalk: {exc}", err=True)
        raise typer.Exit(2) from None


def main() -> None:
    """The ``dingdee-sandbox-dingtalk`` command (``--help`` lists its options)."""
    app(prog_name="dingdee-sandbox-dingtalk")


if __name__ == "__main__":
    main()
