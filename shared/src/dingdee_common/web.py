"""Serving an aiohttp application on a host and port (0 = any free port), one way for all."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from dingdee_common.runtime import install_stop_handlers

__all__ = ["serve_until_stopped", "start_site"]


async def start_site(
    app: web.Application, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, int]:
    """Start ``app``; return its runner (``cleanup()`` stops it) and the bound port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    # AppRunner.addresses: the bound (host, port, …) of each listening socket
    return runner, int(runner.addresses[0][1])


async def serve_until_stopped(
    app: web.Application, host: str, port: int, port_file: Path | None
) -> None:
    """Serve until SIGTERM/SIGINT: print ``listening on …`` and write the port to ``port_file``."""
    runner, bound = await start_site(app, host, port)
    if port_file is not None:
        await asyncio.to_thread(port_file.write_text, f"{bound}\n")
    print(f"listening on http://{host}:{bound}", flush=True)
    stop = asyncio.Event()
    install_stop_handlers(stop)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
