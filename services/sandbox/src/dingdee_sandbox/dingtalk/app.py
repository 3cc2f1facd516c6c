"""The sandbox's aiohttp application: both hosts, Stream mode, the control API, a request log.

``create_app(state)`` is the factory the ``__main__`` module and in-process tests use.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web

from dingdee_sandbox.dingtalk.attachments import attachment_routes
from dingdee_sandbox.dingtalk.contacts import contact_routes
from dingdee_sandbox.dingtalk.control import control_routes
from dingdee_sandbox.dingtalk.keys import API, APP, BODY, STATE
from dingdee_sandbox.dingtalk.notify import NOTICES, Notices, notify_routes
from dingdee_sandbox.dingtalk.oldhost import old_routes
from dingdee_sandbox.dingtalk.schemas import schema_routes
from dingdee_sandbox.dingtalk.shapes import answer_shapes
from dingdee_sandbox.dingtalk.state import State
from dingdee_sandbox.dingtalk.stream import StreamGateway
from dingdee_sandbox.dingtalk.v1host import v1_fallback, v1_routes

__all__ = ["GATEWAY", "STATE", "create_app"]

GATEWAY: web.AppKey[StreamGateway] = web.AppKey("gateway", StreamGateway)
_SECRET_QUERY = ("appsecret", "corpsecret")


def _errcode(response: web.StreamResponse) -> Any:
    """What the log records as the outcome: old ``sub_code`` or ``errcode``, v1.0 ``code``, 0
    for a v1.0 success, None for a non-JSON body."""
    body = getattr(response, "body", None)
    if not isinstance(body, bytes) or not body.startswith(b"{"):
        return None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if "errcode" in data:
        return data.get("sub_code") or data["errcode"]
    if "code" in data:
        return data["code"]
    return 0 if response.status < 300 else None


def _entry(request: web.Request, state: State, status: int, errcode: Any) -> dict[str, Any]:
    query = {k: ("***" if k in _SECRET_QUERY else v) for k, v in request.query.items()}
    return {
        "method": request.method,
        "path": request.path,
        "query": query,
        "app": request.get(APP),
        "api": request.get(API),
        "status": status,
        "errcode": errcode,
        "body": request.get(BODY),
        "at": time.monotonic(),
        "at_ms": state.now_ms(),
    }


@web.middleware
async def request_log(request: web.Request, handler: Any) -> web.StreamResponse:
    """Log every call outside ``/_sandbox/`` (a reset connection is logged with status 0)."""
    if request.path.startswith("/_sandbox"):
        response: web.StreamResponse = await handler(request)
        return response
    state = request.app[STATE]
    try:
        response = await handler(request)
    except asyncio.CancelledError:
        state.requests.append(_entry(request, state, 0, "reset"))
        raise
    except web.HTTPException as exc:
        state.requests.append(_entry(request, state, exc.status, None))
        raise
    state.requests.append(_entry(request, state, response.status, _errcode(response)))
    return response


def create_app(state: State | None = None) -> web.Application:
    """The sandbox application over ``state`` (a fresh empty ``State`` by default)."""
    app = web.Application(middlewares=[request_log, answer_shapes])
    app[STATE] = state or State()
    gateway = StreamGateway(app[STATE])
    app[GATEWAY] = gateway

    async def redelivery(_: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(gateway.redeliver_forever())
        yield
        task.cancel()
        for ws in list(gateway.sockets):
            await ws.close()

    async def close_sockets(_: web.Application) -> None:
        # before the server waits for open handlers: a connected client must not delay a stop
        for ws in list(gateway.sockets):
            await ws.close()

    app.on_shutdown.append(close_sockets)
    app.cleanup_ctx.append(redelivery)
    app.add_routes(gateway.routes())
    app[NOTICES] = Notices()
    app.add_routes(contact_routes())  # before the old host's /topapi catch-all
    app.add_routes(notify_routes())  # work notifications (issue #18), also before it
    app.add_routes(old_routes())
    app.add_routes(v1_routes())
    app.add_routes(schema_routes())
    app.add_routes(control_routes())
    app.add_routes(attachment_routes())  # approval files and comments (dingtalk.md §9.3, §9.4)
    app.add_routes([v1_fallback()])
    return app
