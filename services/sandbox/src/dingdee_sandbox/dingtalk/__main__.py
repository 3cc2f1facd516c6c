"""``python -m dingdee_sandbox.dingtalk``: run the DingTalk sandbox on a host and port.

Serves the old host and the v1.0 host on one base URL. Prints ``listening on http://HOST:PORT``
and writes the bound port to ``--port-file`` (so ``--port 0`` works for tests and ``make run``).
Stops cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from dingdee_common.web import serve_until_stopped
from dingdee_sandbox.dingtalk.app import create_app
from dingdee_sandbox.dingtalk.state import Faults, State

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dingdee_sandbox.dingtalk", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8091)
    p.add_argument("--port-file", type=Path, default=None)
    p.add_argument("--demo", type=int, default=0, help="petty-cash approvals to seed (+N/15 dept)")
    p.add_argument("--seed", type=int, default=7, help="seed of the demo data")
    p.add_argument("--now-ms", type=int, default=None, help="start on a manual clock at this time")
    p.add_argument("--qps", type=int, default=20, help="per (app, API) in a sliding second")
    p.add_argument("--busy-rate", type=float, default=0.0, help="share of -1 系统繁忙 answers")
    p.add_argument("--http-500-rate", type=float, default=0.0)
    p.add_argument("--monthly-quota", type=int, default=None, help="metered calls per month")
    p.add_argument("--fault-seed", type=int, default=0)
    return p


async def _serve(args: argparse.Namespace) -> None:
    faults = Faults(
        qps=args.qps,
        busy_rate=args.busy_rate,
        http_500_rate=args.http_500_rate,
        monthly_quota=args.monthly_quota,
        seed=args.fault_seed,
    )
    state = State(seed=args.seed, faults=faults, manual_now_ms=args.now_ms)
    state.seed_demo(args.demo)
    await serve_until_stopped(create_app(state), args.host, args.port, args.port_file)


def main(argv: list[str] | None = None) -> int:
    """Run the sandbox until SIGTERM/SIGINT; returns 0 on a clean stop, 2 on a bad flag."""
    args = _parser().parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except ValueError as exc:
        print(f"dingdee_sandbox.dingtalk: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
