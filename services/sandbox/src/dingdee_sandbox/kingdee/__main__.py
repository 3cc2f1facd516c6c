"""``python -m dingdee_sandbox.kingdee``: run the Kingdee sandbox on a host and port.

Prints ``listening on http://HOST:PORT`` and writes the bound port to ``--port-file`` (so
``--port 0`` works for tests and ``make run``). Stops cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

from typing import Annotated

import typer
from aiohttp import web

from dingdee_sandbox.cli import sandbox_command
from dingdee_sandbox.kingdee.app import create_app
from dingdee_sandbox.kingdee.masterdata import seed_synthetic_employees
from dingdee_sandbox.kingdee.state import SandboxConfig, SandboxState

__all__ = ["app", "main"]

_D = SandboxConfig()  # the defaults; every option but the last four is a SandboxConfig field


def build(
    acct_id: str = _D.acct_id,
    username: str = _D.username,
    password: str = _D.password,
    app_id: str = _D.app_id,
    app_secret: str = _D.app_secret,
    session_ttl_seconds: float = _D.session_ttl_seconds,
    latency_call_seconds: float = _D.latency_call_seconds,
    latency_package_seconds: float = _D.latency_package_seconds,
    latency_row_seconds: float = _D.latency_row_seconds,
    http_5xx_rate: float = _D.http_5xx_rate,
    response_error_rate: float = _D.response_error_rate,
    slow_rate: float = _D.slow_rate,
    slow_seconds: float = _D.slow_seconds,
    commit_then_drop_rate: float = _D.commit_then_drop_rate,
    drop_keep_fraction: float = _D.drop_keep_fraction,
    workers: Annotated[int, typer.Option(help="requests processed at once")] = _D.workers,
    seed: Annotated[int | None, typer.Option(help="seed of the injected faults")] = None,
    all_or_nothing: Annotated[
        bool, typer.Option("--all-or-nothing", help="BatchSave saves all packages or none")
    ] = False,
    synthetic_employees: Annotated[int, typer.Option(help="extra BD_Empinfo rows")] = 0,
) -> web.Application:
    """Run the local Kingdee sandbox (WebAPI, control API and fault knobs: README).

    Prints `listening on http://HOST:PORT` and runs until SIGTERM/SIGINT; exit code 0 on a clean
    stop, 2 on a bad value. Each knob can also be changed at run time (`/_sandbox/config`).
    """
    given = dict(locals())
    config = SandboxConfig(**{k: v for k, v in given.items() if k in SandboxConfig.model_fields})
    state = SandboxState(config)
    seed_synthetic_employees(state.store, synthetic_employees)
    return create_app(state)


app, main = sandbox_command("dingdee_sandbox.kingdee", 8090, build)

if __name__ == "__main__":
    main()
