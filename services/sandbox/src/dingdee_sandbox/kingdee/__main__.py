"""``python -m dingdee_sandbox.kingdee``: run the Kingdee sandbox on a host and port.

Prints ``listening on http://HOST:PORT`` and writes the bound port to ``--port-file`` (so
``--port 0`` works for tests and ``make run``). Stops cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from dingdee_common.web import serve_until_stopped
from dingdee_sandbox.kingdee.app import create_app
from dingdee_sandbox.kingdee.masterdata import seed_synthetic_employees
from dingdee_sandbox.kingdee.state import SandboxConfig, SandboxState

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    d = SandboxConfig()
    p = argparse.ArgumentParser(prog="dingdee_sandbox.kingdee", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8090)
    p.add_argument("--port-file", type=Path, default=None)
    for name in ("acct_id", "username", "password", "app_id", "app_secret"):
        p.add_argument(f"--{name.replace('_', '-')}", default=getattr(d, name))
    for name in (
        "session_ttl_seconds",
        "latency_call_seconds",
        "latency_package_seconds",
        "latency_row_seconds",
        "http_5xx_rate",
        "response_error_rate",
        "slow_rate",
        "slow_seconds",
        "commit_then_drop_rate",
        "drop_keep_fraction",
    ):
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(d, name))
    p.add_argument("--workers", type=int, default=d.workers)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--all-or-nothing", action="store_true")
    p.add_argument("--synthetic-employees", type=int, default=0, help="extra BD_Empinfo rows")
    return p


async def _serve(args: argparse.Namespace) -> None:
    fields = SandboxConfig.model_fields
    config = SandboxConfig(**{k: v for k, v in vars(args).items() if k in fields})
    state = SandboxState(config)
    seed_synthetic_employees(state.store, args.synthetic_employees)
    await serve_until_stopped(create_app(state), args.host, args.port, args.port_file)


def main(argv: list[str] | None = None) -> int:
    """Run the sandbox until SIGTERM/SIGINT; returns 0 on a clean stop."""
    args = _parser().parse_args(argv)
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
