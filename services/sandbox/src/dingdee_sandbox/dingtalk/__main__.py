"""``python -m dingdee_sandbox.dingtalk``: run the DingTalk sandbox on a host and port.

Serves the old host and the v1.0 host on one base URL. Prints ``listening on http://HOST:PORT``
and writes the bound port to ``--port-file`` (so ``--port 0`` works for tests and ``make run``).
Stops cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

from typing import Annotated

import typer
from aiohttp import web

from dingdee_sandbox.cli import sandbox_command
from dingdee_sandbox.dingtalk.app import create_app
from dingdee_sandbox.dingtalk.state import Faults, State

__all__ = ["app", "main"]


def build(
    demo: Annotated[int, typer.Option(help="petty-cash approvals to seed (+N/15 dept)")] = 0,
    seed: Annotated[int, typer.Option(help="seed of the demo data")] = 7,
    now_ms: Annotated[int | None, typer.Option(help="start on a manual clock at this time")] = None,
    qps: Annotated[int, typer.Option(help="per (app, API) in a sliding second")] = 20,
    busy_rate: Annotated[float, typer.Option(help="share of -1 系统繁忙 answers")] = 0.0,
    http_500_rate: Annotated[float, typer.Option(help="share of HTTP 500 answers")] = 0.0,
    monthly_quota: Annotated[int | None, typer.Option(help="metered calls per month")] = None,
    fault_seed: Annotated[int, typer.Option(help="seed of the injected faults")] = 0,
) -> web.Application:
    """Run the local DingTalk sandbox (old host and v1.0 host on one base URL).

    Prints `listening on http://HOST:PORT` and runs until SIGTERM/SIGINT; exit code 0 on a clean
    stop, 2 on a bad value.
    """
    faults = Faults(
        qps=qps,
        busy_rate=busy_rate,
        http_500_rate=http_500_rate,
        monthly_quota=monthly_quota,
        seed=fault_seed,
    )
    state = State(seed=seed, faults=faults, manual_now_ms=now_ms)
    state.seed_demo(demo)
    return create_app(state)


app, main = sandbox_command("dingdee_sandbox.dingtalk", 8091, build)

if __name__ == "__main__":
    main()
