"""The old host (``oapi.dingtalk.com``): ``gettoken``, ``listids``, ``get`` (contract §1–§3).

Every answer is HTTP 200 with ``errcode``; auth, permission and throttling hide inside
``errcode 88`` with a string ``sub_code``; the token is read from the query's ``access_token``
(or a form body field). Unknown ``topapi`` paths answer ``errcode 22``.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from dingdee_sandbox.dingtalk.gate import Refusal, admit
from dingdee_sandbox.dingtalk.keys import API, APP, BODY, STATE
from dingdee_sandbox.dingtalk.listing import CapError, ListError, page, parse_int, validate
from dingdee_sandbox.dingtalk.render import render_old
from dingdee_sandbox.dingtalk.responses import (
    MALFORMED,
    old_err88,
    old_flat,
    old_json,
    old_ok,
    reset_connection,
)
from dingdee_sandbox.dingtalk.state import State, cst

__all__ = ["admitted", "old_routes", "refusal_response", "transport_refusal"]

_QPS_MSG = "应用调用该接口的频率超过限制"
_GLOBAL_MSG = (
    "当前所有钉钉应用调用该接口次数过多，超出了该接口承受的最大qps，请求被暂时限制了，"
    "建议错开整点时刻调用该接口"
)
_AUTH = {
    # kind: (sub_code, sub_msg, flat errcode, flat errmsg)
    "token_missing": ("40000", "access_token is blank", 41001, "缺少access_token参数"),
    "token_invalid": ("40014", "不合法的access_token", 40014, "不合法的access_token"),
    "token_expired": ("40014", "不合法的access_token", 42001, "access_token超时"),
}


def _global_errmsg(state: State, api: str, until_ms: int) -> str:
    now = cst(state.now_ms())
    limit = state.faults.global_qps or 1200
    return (
        f"ding talk error[subcode=90002,submsg={_GLOBAL_MSG}, "
        f"apiPath(dingtalk.oapi.processinstance.{api}), 从 {now} 到 {now} 请求总次数超过 "
        f"{limit} 次, 限制将在 {cst(until_ms)} 结束.]"
    )


def transport_refusal(request: web.Request, refusal: Refusal) -> web.Response:
    """Injected 5xx, malformed body or a reset: the same on both hosts."""
    if refusal.kind == "http":
        return web.Response(status=refusal.status, text=f"<html>{refusal.status}</html>")
    if refusal.kind == "malformed":
        return web.Response(body=MALFORMED, content_type="application/json")
    reset_connection(request)


def _throttled(state: State, refusal: Refusal, api: str) -> web.Response:
    """90018/90019 (per app) or 90002 (global), in ``errcode 88`` or flat (dingtalk.md §5.2)."""
    flat = state.faults.flat_throttle
    if refusal.kind == "global_qps":
        errmsg = _global_errmsg(state, api, refusal.until_ms)
        return old_flat(90002, errmsg) if flat else old_err88("90002", _GLOBAL_MSG, errmsg)
    code = state.faults.throttle_code
    return old_flat(int(code), _QPS_MSG) if flat else old_err88(code, _QPS_MSG)


def refusal_response(request: web.Request, refusal: Refusal, api: str) -> web.Response:
    """Render a refusal the old host's way (HTTP 200 except injected 5xx)."""
    state = request.app[STATE]
    kind = refusal.kind
    if kind in _AUTH:
        sub_code, sub_msg, flat_code, flat_msg = _AUTH[kind]
        if state.faults.flat_auth_errors:
            return old_flat(flat_code, flat_msg)
        return old_err88(sub_code, sub_msg)
    if kind in ("qps", "global_qps"):
        return _throttled(state, refusal, api)
    if kind == "quota":
        used, quota = state.limiter.metered_calls, state.faults.monthly_quota
        return old_flat(90020, f"您的企业本月api调用量已超过限制,调用量:{used}次,额度:{quota}次")
    simple = {
        "forbidden": lambda: old_err88("60011", "没有调用该接口的权限"),
        "busy": lambda: old_flat(-1, "系统繁忙"),
    }.get(kind)
    return simple() if simple else transport_refusal(request, refusal)


async def _read_body(request: web.Request) -> dict[str, Any]:
    """The JSON body, else the fields of a form-urlencoded body; {} when unreadable."""
    raw = await request.read()
    try:
        data = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        if request.content_type != "application/x-www-form-urlencoded":
            return {}
        return dict((await request.post()).items())
    return data if isinstance(data, dict) else {}


async def admitted(
    request: web.Request, api: str, *, metered: bool = True
) -> tuple[dict[str, Any], web.Response | None]:
    """Read the body and admit the call (token, limits, faults); the refusal already rendered."""
    request[API] = api
    body = await _read_body(request)
    request[BODY] = body
    token = request.query.get("access_token") or body.get("access_token")
    app_key, refusal = await admit(request.app[STATE], token, "old", api, metered=metered)
    if app_key is not None:
        request[APP] = app_key
    return body, (refusal_response(request, refusal, api) if refusal else None)


async def gettoken(request: web.Request) -> web.Response:
    """``GET /gettoken?appkey=&appsecret=``: 40035 when missing, 40096 when wrong."""
    request[API] = "gettoken"
    state = request.app[STATE]
    key, secret = request.query.get("appkey"), request.query.get("appsecret")
    if not key or not secret:
        return old_flat(40035, "缺少参数 corpid or appkey")
    request[APP] = key
    if state.apps.get(key) != secret:
        return old_flat(40096, "不合法的appKey或appSecret")
    token = state.issue_token(key, "old")
    return old_ok({"access_token": token, "expires_in": 7200})


def _param_error(state: State) -> web.Response:
    return old_flat(state.faults.listids_errcode, state.faults.listids_errmsg)


async def listids(request: web.Request) -> web.Response:
    """``POST /topapi/processinstance/listids``: one page of ids by creation time."""
    body, failure = await admitted(request, "listids")
    if failure is not None:
        return failure
    state = request.app[STATE]
    raw_users = body.get("userid_list") or ""
    userids = [u for u in str(raw_users).split(",") if u]
    try:
        size = parse_int(body.get("size"), "invalidMaxResults")
        query = validate(
            state,
            body.get("process_code"),
            parse_int(body.get("start_time"), "invalidInstanceListIdsStartTime"),
            parse_int(body.get("end_time"), "invalidEndTime"),
            parse_int(body.get("cursor"), "invalidNextToken") or 0,
            20 if size is None else size,
            userids,
        )
    except ListError:
        return _param_error(state)
    try:
        ids, next_cursor = page(state, query)
    except CapError:
        return _param_error(state)
    result: dict[str, Any] = {"list": ids}
    if next_cursor is not None:
        result["next_cursor"] = next_cursor
    return old_ok({"result": result})


async def get(request: web.Request) -> web.Response:
    """``POST /topapi/processinstance/get``: one instance, snake_case, without its id."""
    body, failure = await admitted(request, "get")
    if failure is not None:
        return failure
    state = request.app[STATE]
    pid = str(body.get("process_instance_id") or "")
    if pid in state.faults.failing_instance_ids:
        return old_flat(-1, "系统繁忙")
    inst = state.instances.get(pid)
    if inst is None:
        message = "审批单状态异常。检查审批实例Id是否正确"
        if state.faults.unknown_instance == "flat":
            return old_flat(820005, message)
        return old_err88("820005", message)
    return old_ok({"process_instance": render_old(inst)})


async def unknown(request: web.Request) -> web.Response:
    """Any other old-host path: ``errcode 22`` 不合法ApiName (HTTP 200, not 404)."""
    request[API] = "unknown"
    name = request.path.strip("/").replace("/", ".").removeprefix("topapi.")
    msg = f"不合法ApiName，ApiName = dingtalk.oapi.{name}"
    return old_json({"errcode": 22, "sub_msg": msg, "errmsg": msg})


def old_routes() -> list[web.RouteDef]:
    """The old host's routes (the catch-all for unknown ``topapi`` paths last)."""
    return [
        web.get("/gettoken", gettoken),
        web.post("/topapi/processinstance/listids", listids),
        web.post("/topapi/processinstance/get", get),
        web.route("*", "/topapi/{tail:.*}", unknown),
    ]
