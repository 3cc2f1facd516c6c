"""Inspection and control endpoints under ``/_sandbox/`` (JSON), for tests, demos and benches.

``GET /_sandbox/bills?form_id=X`` lists stored records; ``GET|POST /_sandbox/config`` reads or
patches latency and fault knobs; ``POST /_sandbox/faults`` queues one-shot faults;
``POST /_sandbox/sessions/revoke`` invalidates every session; ``GET /_sandbox/stats`` counts calls.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from dingdee_sandbox.kingdee.state import FAULT_KINDS, SandboxState

__all__ = ["add_control_routes"]


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    data = orjson.loads(raw) if raw.strip() else {}
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="expected a JSON object")
    return data


def add_control_routes(app: web.Application, key: web.AppKey[SandboxState]) -> None:
    """Register the ``/_sandbox/`` endpoints on ``app`` (whose state lives under ``key``)."""

    async def bills(request: web.Request) -> web.Response:
        form_id = request.query.get("form_id", "")
        if not form_id:
            return _json({"error": "form_id is required"}, 400)
        records = request.app[key].store.bills(form_id)
        return _json({"bills": [r.as_json() for r in records]})

    async def get_config(request: web.Request) -> web.Response:
        config = request.app[key].config.model_dump()
        for secret in ("password", "app_secret"):
            config[secret] = "**********"
        return _json(config)

    async def post_config(request: web.Request) -> web.Response:
        try:
            request.app[key].update_config(await _body(request))
        except ValidationError as exc:
            return _json({"error": exc.errors(include_url=False)}, 400)
        return await get_config(request)

    async def faults(request: web.Request) -> web.Response:
        state = request.app[key]
        queue = (await _body(request)).get("queue", [])
        unknown = [k for k in queue if k not in FAULT_KINDS]
        if unknown:
            return _json({"error": f"unknown faults {unknown}; known {FAULT_KINDS}"}, 400)
        state.fault_queue.extend(queue)
        return _json({"queue": state.fault_queue})

    async def revoke(request: web.Request) -> web.Response:
        return _json({"revoked": request.app[key].revoke_sessions()})

    async def stats(request: web.Request) -> web.Response:
        state = request.app[key]
        return _json({"stats": dict(state.stats), "sessions": len(state.sessions)})

    async def healthz(_: web.Request) -> web.Response:
        return _json({"status": "ok"})

    app.router.add_get("/_sandbox/bills", bills)
    app.router.add_get("/_sandbox/config", get_config)
    app.router.add_post("/_sandbox/config", post_config)
    app.router.add_post("/_sandbox/faults", faults)
    app.router.add_post("/_sandbox/sessions/revoke", revoke)
    app.router.add_get("/_sandbox/stats", stats)
    app.router.add_get("/_sandbox/healthz", healthz)
