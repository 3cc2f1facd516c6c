"""HTTP routes: the DingTalk old host (contract §1–§3, §5) and the ``/_sandbox/`` control API."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from aiohttp import web

from dingdee_sandbox.demo_org import DEMO_APP
from dingdee_sandbox.dingtalk.state import Faults, State
from dingdee_sandbox.dingtalk.stream import StreamGateway

__all__ = ["create_app"]

STATE: web.AppKey[State] = web.AppKey("state", State)
GATEWAY: web.AppKey[StreamGateway] = web.AppKey("gateway", StreamGateway)
BODY: web.RequestKey[dict[str, Any]] = web.RequestKey("body", dict)
APPS = {DEMO_APP.app_key: DEMO_APP.app_secret}


def _rid() -> str:
    return secrets.token_hex(6)


def _ok(body: dict[str, Any]) -> web.Response:
    return web.json_response({"errcode": 0, "errmsg": "ok", **body, "request_id": _rid()})


def _err88(sub_code: str, sub_msg: str) -> web.Response:
    return web.json_response(
        {
            "errcode": 88,
            "sub_code": sub_code,
            "sub_msg": sub_msg,
            "errmsg": f"ding talk error[subcode={sub_code},submsg={sub_msg}]",
            "request_id": _rid(),
        }
    )


def _flat(errcode: int, errmsg: str) -> web.Response:
    return web.json_response({"errcode": errcode, "errmsg": errmsg, "request_id": _rid()})


def _errcode(response: web.StreamResponse) -> Any:
    body = getattr(response, "body", None)
    if not isinstance(body, bytes) or not body.startswith(b"{"):
        return None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return data.get("sub_code") or data.get("errcode")


@web.middleware
async def request_log(request: web.Request, handler: Any) -> web.StreamResponse:
    response: web.StreamResponse = await handler(request)
    if not request.path.startswith("/_sandbox"):
        state = request.app[STATE]
        entry = {
            "method": request.method,
            "path": request.path,
            "status": response.status,
            "errcode": _errcode(response),
            "body": request.get(BODY),
            "at": time.monotonic(),
            "at_ms": state.now_ms(),
        }
        state.requests.append(entry)
    return response


async def gettoken(request: web.Request) -> web.Response:
    key, secret = request.query.get("appkey"), request.query.get("appsecret")
    if not key or not secret:
        return _flat(40035, "缺少参数 corpid or appkey")
    if APPS.get(key) != secret:
        return _flat(40096, "不合法的appKey或appSecret")
    token = request.app[STATE].issue_token(key)
    return web.json_response(
        {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200}
    )


async def _guard(request: web.Request, api: str) -> web.Response | None:
    """Token, throttling, quota and injected faults, in the order DingTalk applies them."""
    state = request.app[STATE]
    token = request.query.get("access_token")
    if not token:
        return _err88("40000", "access_token is blank")
    app_key = state.app_of_token(token)
    if app_key is None:
        return _err88("40014", "不合法的access_token")
    if state.throttled(app_key, api):
        return _err88("90018", "应用调用该接口的频率超过限制")
    quota = state.faults.monthly_quota
    if quota is not None and state.metered_calls >= quota:
        return _flat(
            90020,
            f"您的企业本月api调用量已超过限制,调用量:{state.metered_calls}次,额度:{quota}次",
        )
    state.metered_calls += 1
    return await _injected(state)


async def _injected(state: State) -> web.Response | None:
    f, roll = state.faults, state.fault_rng.random()
    edges: list[tuple[float, Callable[[], web.Response]]] = [
        (f.http_500_rate, lambda: web.Response(status=500, text="<html>500</html>")),
        (f.busy_rate, lambda: _flat(-1, "系统繁忙")),
        (f.global_qps_rate, lambda: _err88("90002", "当前所有钉钉应用调用该接口次数过多")),
        (f.malformed_rate, lambda: web.Response(text="<html>gateway</html>", status=200)),
    ]
    for rate, make in edges:
        if roll < rate:
            return make()
        roll -= rate
    if state.fault_rng.random() < f.slow_rate:
        await asyncio.sleep(f.slow_seconds)
    return None


async def listids(request: web.Request) -> web.Response:
    failure = await _guard(request, "listids")
    if failure is not None:
        return failure
    body = await request.json()
    request[BODY] = body
    state = request.app[STATE]
    now = state.now_ms()
    start, size = body.get("start_time"), int(body.get("size", 20))
    end = int(body.get("end_time") or now)
    if not body.get("process_code") or start is None:
        return _flat(400002, "参数错误")
    start = int(start)
    if size > 20 or size < 1 or end < start or end - start > 120 * 86_400_000:
        return _flat(400002, "参数错误")
    if start < now - 365 * 86_400_000:
        return _flat(400002, "参数错误")
    ids = state.listed(str(body["process_code"]), start, end)[:10_000]
    cursor = int(body.get("cursor") or 0)
    result: dict[str, Any] = {"list": ids[cursor : cursor + size]}
    if cursor + size < len(ids):
        result["next_cursor"] = cursor + size
    return _ok({"result": result})


async def get(request: web.Request) -> web.Response:
    failure = await _guard(request, "get")
    if failure is not None:
        return failure
    body = await request.json()
    state = request.app[STATE]
    inst = state.instances.get(str(body.get("process_instance_id")))
    if inst is None:
        return _err88("820005", "审批单状态异常。检查审批实例Id是否正确")
    return _ok({"process_instance": state.render(inst)})


async def unknown(request: web.Request) -> web.Response:
    return _err88("22", f"不合法ApiName，ApiName = dingtalk.oapi.{request.path.strip('/')}")


# ---- control API ---------------------------------------------------------------------------


async def expected(request: web.Request) -> web.Response:
    state = request.app[STATE]
    rows = [
        {"process_code": i.process_code, "process_instance_id": i.id, "business_id": i.business_id}
        for i in state.instances.values()
        if i.status == "COMPLETED" and i.result == "agree" and i.biz_action == "NONE"
    ]
    rows.sort(key=lambda r: (r["process_code"], r["process_instance_id"]))
    return web.json_response({"expected": rows})


async def instances(request: web.Request) -> web.Response:
    state = request.app[STATE]
    code = request.query.get("process_code")
    rows = [
        state.summary(i) for i in state.instances.values() if not code or i.process_code == code
    ]
    return web.json_response({"instances": rows})


async def create_instance(request: web.Request) -> web.Response:
    """One instance, or ``count`` of them spread evenly over ``spread_ms`` before now."""
    body = await request.json()
    state = request.app[STATE]
    count = int(body.get("count", 1))
    if count == 1:
        inst = state.create(str(body["process_code"]), body.get("create_time_ms"))
        return web.json_response({"id": inst.id, "business_id": inst.business_id})
    now, spread = state.now_ms(), int(body.get("spread_ms", 0))
    ids = [
        state.create(str(body["process_code"]), now - spread + spread * i // count).id
        for i in range(count)
    ]
    return web.json_response({"ids": ids})


async def bulk_act(request: web.Request) -> web.Response:
    """``{"ids": [...], "action": "approve"}``: the same action on many instances."""
    body = await request.json()
    state = request.app[STATE]
    linked = [state.finish(str(i), str(body["action"])).id for i in body["ids"]]
    return web.json_response({"ids": linked})


async def act(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        inst = state.finish(request.match_info["id"], request.match_info["action"])
    except KeyError:
        raise web.HTTPNotFound(text="no such instance") from None
    except ValueError as exc:
        raise web.HTTPConflict(text=str(exc)) from None
    return web.json_response(state.summary(inst))


async def clock(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if request.method == "POST":
        body = await request.json()
        if body.get("mode") == "real":
            state.manual_now_ms = None
        if "now_ms" in body:
            state.manual_now_ms = int(body["now_ms"])
        if "advance_ms" in body:
            state.manual_now_ms = state.now_ms() + int(body["advance_ms"])
    mode = "real" if state.manual_now_ms is None else "manual"
    return web.json_response({"mode": mode, "now_ms": state.now_ms()})


async def requests_log(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if request.method == "DELETE":
        state.requests.clear()
    return web.json_response({"requests": state.requests})


async def faults(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if request.method == "POST":
        body = await request.json()
        state.faults = Faults(**{**state.faults.__dict__, **body})
    return web.json_response(state.faults.__dict__)


async def revoke_tokens(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.revoked.update(token for token, _ in state.tokens.values())
    return web.json_response({"revoked": len(state.revoked)})


def create_app(state: State | None = None) -> web.Application:
    app = web.Application(middlewares=[request_log])
    app[STATE] = state or State()
    gateway = StreamGateway(app[STATE])
    app[GATEWAY] = gateway

    async def redelivery(_: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(gateway.redeliver_forever())
        yield
        task.cancel()
        for ws in list(gateway.sockets):
            await ws.close()

    app.cleanup_ctx.append(redelivery)
    app.add_routes(gateway.routes())
    app.add_routes(
        [
            web.get("/gettoken", gettoken),
            web.post("/topapi/processinstance/listids", listids),
            web.post("/topapi/processinstance/get", get),
            web.get("/_sandbox/expected", expected),
            web.get("/_sandbox/instances", instances),
            web.post("/_sandbox/instances", create_instance),
            web.post("/_sandbox/instances/bulk", bulk_act),
            web.post("/_sandbox/instances/{id}/{action}", act),
            web.route("*", "/_sandbox/clock", clock),
            web.route("*", "/_sandbox/requests", requests_log),
            web.route("*", "/_sandbox/faults", faults),
            web.post("/_sandbox/tokens/revoke", revoke_tokens),
            web.route("*", "/topapi/{tail:.*}", unknown),
        ]
    )
    return app
