"""``python -m dingdee_sandbox.dingtalk``: serve the DingTalk old-host sandbox.

Prints ``listening on http://HOST:PORT`` and writes the bound port to ``--port-file``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from aiohttp import web

from dingdee_common.runtime import install_stop_handlers
from dingdee_sandbox.dingtalk.app import create_app
from dingdee_sandbox.dingtalk.state import Faults, State

__all__ = ["main"]


async def _serve(args: argparse.Namespace) -> None:
    state = State(seed=args.seed, faults=Faults(qps=args.qps, busy_rate=args.busy_rate))
    state.seed_demo(args.demo)
    runner = web.AppRunner(create_app(state), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    sockets = getattr(site._server, "sockets", None) or []
    port = int(sockets[0].getsockname()[1]) if sockets else args.port
    if args.port_file:
        args.port_file.write_text(str(port))
    print(f"listening on http://{args.host}:{port}", flush=True)
    stop = asyncio.Event()
    install_stop_handlers(stop)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dingdee_sandbox.dingtalk", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--port-file", type=Path, default=None)
    parser.add_argument("--demo", type=int, default=0, help="petty-cash approvals to seed")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--qps", type=int, default=20, help="per (app, API)")
    parser.add_argument("--busy-rate", type=float, default=0.0, help="share of -1 answers")
    asyncio.run(_serve(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
