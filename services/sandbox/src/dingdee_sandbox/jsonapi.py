"""JSON helpers of the sandboxes' ``/_sandbox/`` control APIs."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

__all__ = ["json_body", "json_response"]


def json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object ({} for an empty body); 400 when it is not one."""
    raw = await request.read()
    try:
        data = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        raise web.HTTPBadRequest(text="body is not JSON") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="expected a JSON object")
    return data
