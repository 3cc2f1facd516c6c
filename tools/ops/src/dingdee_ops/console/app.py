"""``dingdee console``: the web application and its ops port.

The pages are served on ``DINGDEE_CONSOLE__HOST:PORT`` (loopback by default); ``/healthz``,
``/readyz`` and ``/metrics`` on the ops port (``DINGDEE_HTTP__*``) like every other process,
without record content and without authentication.
"""

from __future__ import annotations

import asyncio
import contextlib
from importlib import resources

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry

from dingdee_common.observability.server import OpsServer
from dingdee_common.runtime import install_stop_handlers
from dingdee_common.web import start_site
from dingdee_ops.console.dlq_views import DeadLetters
from dingdee_ops.console.render import Renderer
from dingdee_ops.console.security import Handler, Signer, guard, security_headers, sign_in
from dingdee_ops.console.settings import ConsoleSettings
from dingdee_ops.console.state import ConsoleState
from dingdee_ops.console.views import Pages

__all__ = ["OPERATOR_PATHS", "build_app", "serve"]

OPERATOR_PATHS = ("/dlq/replay",)


def _metrics_middleware(state: ConsoleState) -> Middleware:
    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            state.metrics.requests.labels(route, str(exc.status)).inc()
            raise
        state.metrics.requests.labels(route, str(response.status)).inc()
        return response

    return count


def build_app(state: ConsoleState) -> web.Application:
    """The console's routes behind the security headers, the sign-in guard and CSRF."""
    config = state.config
    signer = Signer(config.session_secret.get_secret_value())
    render = Renderer(state, signer)
    pages = Pages(state, render)
    dlq = DeadLetters(state, render)
    app = web.Application(
        middlewares=[
            security_headers,
            _metrics_middleware(state),
            guard(config, signer, OPERATOR_PATHS),
        ],
        client_max_size=2 * 1024 * 1024,
    )

    async def home(_: web.Request) -> web.StreamResponse:
        raise web.HTTPSeeOther("/flows")

    async def signin(request: web.Request) -> web.StreamResponse:
        return sign_in(config, signer, request)

    static = resources.files("dingdee_ops.console") / "static"
    app.router.add_get("/", home)
    app.router.add_get("/signin", signin)
    app.router.add_get("/flows", pages.flows)
    app.router.add_get("/approvals", pages.approvals)
    app.router.add_get("/try", pages.try_form)
    app.router.add_post("/try", pages.try_post)
    app.router.add_get("/dlq", dlq.list)
    app.router.add_get("/dlq/{topic}/{partition}/{offset}", dlq.inspect)
    app.router.add_post("/dlq/replay", dlq.replay)
    app.router.add_static("/static/", str(static))
    return app


async def serve(settings: ConsoleSettings) -> None:
    """Serve the console and its ops port until SIGTERM/SIGINT."""
    registry = CollectorRegistry()
    state = ConsoleState(settings, registry)
    ops = OpsServer(settings.http, registry, state.health)
    await ops.start()
    refreshing = asyncio.create_task(state.run())
    runner, port = await start_site(build_app(state), settings.console.host, settings.console.port)
    if settings.console.port_file is not None:
        await asyncio.to_thread(settings.console.port_file.write_text, f"{port}\n")
    print(f"console on http://{settings.console.host}:{port} · ops :{ops.port}", flush=True)
    stop = asyncio.Event()
    install_stop_handlers(stop)
    try:
        await stop.wait()
    finally:
        refreshing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refreshing
        await runner.cleanup()
        await ops.stop()
