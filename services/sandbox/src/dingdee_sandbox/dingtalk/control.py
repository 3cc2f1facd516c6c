"""Inspection and control endpoints under ``/_sandbox/`` (JSON), for tests, demos and benches.

``GET expected`` (what must become bills), ``GET instances[?process_code=&status=]``, ``GET
instances/{id}``, ``POST instances`` (create), ``POST instances/{id}/{action}`` and ``POST
instances/bulk`` (approve, refuse, terminate, modify, revoke), ``GET|POST clock``, ``GET|DELETE
requests`` (the request log), ``GET|POST faults`` (knobs), ``POST tokens/revoke``, ``GET
stats``, ``GET healthz``. Errors: 400 bad input, 404 unknown instance, 409 wrong state.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aiohttp import web

from dingdee_sandbox.dingtalk.keys import STATE
from dingdee_sandbox.dingtalk.render import render_old
from dingdee_sandbox.dingtalk.state import State
from dingdee_sandbox.jsonapi import json_body as _body
from dingdee_sandbox.jsonapi import json_response as _json

__all__ = ["control_routes"]


async def expected(request: web.Request) -> web.Response:
    """COMPLETED + agree + ``biz_action`` NONE instances, sorted by (process_code, id)."""
    return _json({"expected": request.app[STATE].expected()})


async def instances(request: web.Request) -> web.Response:
    """Summaries of every instance, optionally of one process_code and/or status."""
    state = request.app[STATE]
    code, status = request.query.get("process_code"), request.query.get("status")
    rows = [
        state.summary(i)
        for i in state.instances.values()
        if (not code or i.process_code == code) and (not status or i.status == status)
    ]
    return _json({"instances": rows})


async def one_instance(request: web.Request) -> web.Response:
    """One instance: its summary and its old-host ``process_instance`` rendering."""
    state = request.app[STATE]
    inst = state.instances.get(request.match_info["id"])
    if inst is None:
        raise web.HTTPNotFound(text="no such instance")
    return _json({"instance": state.summary(inst), "process_instance": render_old(inst)})


def _create_one(state: State, body: dict[str, Any], create_ms: int | None) -> dict[str, str]:
    try:
        inst = state.create(
            str(body["process_code"]),
            create_ms,
            form=body.get("form_component_values"),
            originator_userid=body.get("originator_userid"),
            table_rows=body.get("table_rows"),
        )
    except KeyError as exc:
        raise web.HTTPBadRequest(text=f"bad instance: {exc}") from None
    return {"id": inst.id, "business_id": inst.business_id}


async def create_instance(request: web.Request) -> web.Response:
    """Create RUNNING instances: one (``{"id", "business_id"}``), or ``count`` of them spread
    evenly over the ``spread_ms`` before now (``{"ids": [...]}``).

    Body: ``process_code`` (required), ``create_time_ms``, ``form_component_values`` (read
    format, used verbatim), ``originator_userid``, ``table_rows`` (0 = empty-table quirk),
    ``count``, ``spread_ms``.
    """
    body = await _body(request)
    state = request.app[STATE]
    if not body.get("process_code"):
        raise web.HTTPBadRequest(text="process_code is required")
    count = int(body.get("count", 1))
    if count == 1:
        return _json(_create_one(state, body, body.get("create_time_ms")))
    now, spread = state.now_ms(), int(body.get("spread_ms", 0))
    ids = [_create_one(state, body, now - spread + spread * i // count)["id"] for i in range(count)]
    return _json({"ids": ids})


def _apply(state: State, instance_id: str, action: str) -> dict[str, Any]:
    try:
        return state.summary(state.finish(instance_id, action))
    except KeyError:
        raise web.HTTPNotFound(text=f"no such instance {instance_id}") from None
    except ValueError as exc:
        raise web.HTTPConflict(text=str(exc)) from None


async def act(request: web.Request) -> web.Response:
    """approve/refuse/terminate → the instance; modify/revoke → the new linked instance."""
    info = request.match_info
    return _json(_apply(request.app[STATE], info["id"], info["action"]))


async def bulk_act(request: web.Request) -> web.Response:
    """``{"ids": [...], "action": "approve"}``: the same action on many; returns the ids of the
    instances acted on (or the linked ones for modify/revoke)."""
    body = await _body(request)
    state = request.app[STATE]
    return _json({"ids": [_apply(state, str(i), str(body["action"]))["id"] for i in body["ids"]]})


async def clock(request: web.Request) -> web.Response:
    """Read or set the clock: ``{"mode": "manual", "now_ms"}``, ``{"advance_ms"}``, ``{"mode":
    "real"}``; ``mode: manual`` alone freezes the current time."""
    state = request.app[STATE]
    if request.method == "POST":
        body = await _body(request)
        if body.get("mode") == "real":
            state.manual_now_ms = None
        elif body.get("mode") == "manual" and "now_ms" not in body:
            state.manual_now_ms = state.now_ms()
        if "now_ms" in body:
            state.manual_now_ms = int(body["now_ms"])
        if "advance_ms" in body:
            state.manual_now_ms = state.now_ms() + int(body["advance_ms"])
    mode = "real" if state.manual_now_ms is None else "manual"
    return _json({"mode": mode, "now_ms": state.now_ms()})


async def requests_log(request: web.Request) -> web.Response:
    """The request log (``DELETE`` clears it first)."""
    state = request.app[STATE]
    if request.method == "DELETE":
        state.requests.clear()
    return _json({"requests": state.requests})


async def faults(request: web.Request) -> web.Response:
    """Read or patch the knobs (``config.Faults``); 400 names an unknown or invalid knob."""
    state = request.app[STATE]
    if request.method == "POST":
        try:
            state.set_faults(state.faults.patched(await _body(request)))
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)
    return _json(state.faults.as_json())


async def revoke_tokens(request: web.Request) -> web.Response:
    """Revoke current tokens (``{"app_key": K}`` for one app); ``{"revoked": n}``."""
    body = await _body(request)
    return _json({"revoked": request.app[STATE].token_store.revoke(body.get("app_key"))})


async def stats(request: web.Request) -> web.Response:
    """Counts: instances by status, requests by (api, errcode), metered calls this month."""
    state = request.app[STATE]
    by_status = Counter(i.status for i in state.instances.values())
    by_api = Counter(f"{r['api']}:{r['errcode']}" for r in state.requests)
    return _json(
        {
            "instances": dict(by_status),
            "requests": dict(by_api),
            "metered_calls": state.metered_calls,
        }
    )


async def healthz(_: web.Request) -> web.Response:
    """Liveness for ``make run`` and orchestration."""
    return _json({"status": "ok"})


def control_routes() -> list[web.RouteDef]:
    """Every ``/_sandbox/`` route."""
    return [
        web.get("/_sandbox/expected", expected),
        web.get("/_sandbox/instances", instances),
        web.post("/_sandbox/instances", create_instance),
        web.post("/_sandbox/instances/bulk", bulk_act),
        web.get("/_sandbox/instances/{id}", one_instance),
        web.post("/_sandbox/instances/{id}/{action}", act),
        web.route("*", "/_sandbox/clock", clock),
        web.route("*", "/_sandbox/requests", requests_log),
        web.route("*", "/_sandbox/faults", faults),
        web.post("/_sandbox/tokens/revoke", revoke_tokens),
        web.get("/_sandbox/stats", stats),
        web.get("/_sandbox/healthz", healthz),
    ]
