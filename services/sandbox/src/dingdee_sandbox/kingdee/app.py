"""The Kingdee sandbox HTTP app: ``POST {root}/{ServiceName}.common.kdsvc`` (contract §8).

Routing is case-insensitive on the stub method name. Business calls are authenticated (signature
headers or a session), serialised per session, slowed by the latency model and exposed to the
fault knobs before the store is touched.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from typing import Any

from aiohttp import web

from dingdee_sandbox.kingdee.attachments import (
    ATTACHMENT_METHODS,
    attachment_routes,
    do_attachment,
    is_attachment_query,
)
from dingdee_sandbox.kingdee.control import add_control_routes
from dingdee_sandbox.kingdee.envelope import EnvelopeError, parse_envelope
from dingdee_sandbox.kingdee.masterdata_control import add_masterdata_routes
from dingdee_sandbox.kingdee.operations import OPERATIONS, do_operation
from dingdee_sandbox.kingdee.responses import (
    failure_envelope,
    json_response,
    response_error,
)
from dingdee_sandbox.kingdee.service import (
    LOGIN_METHODS,
    async_started,
    bill_numbers,
    do_async_result,
    do_business_info,
    do_login,
    do_query,
    do_save,
    do_view,
    package_count,
)
from dingdee_sandbox.kingdee.signing import SignatureError, verify_signature
from dingdee_sandbox.kingdee.state import SandboxState, Session

__all__ = ["STATE_KEY", "create_app"]

STATE_KEY: web.AppKey[SandboxState] = web.AppKey("kingdee_state", SandboxState)
SUFFIX = ".common.kdsvc"
BUSINESS = (
    "save",
    "batchsave",
    "executebillquery",
    "billquery",
    "view",
    "queryasyncresult",
    "querybusinessinfo",
    *OPERATIONS,
)
KNOWN = (*BUSINESS, *ATTACHMENT_METHODS, *LOGIN_METHODS, "logout", "getdatacenterlist")
# what IIS sends instead of an answer (kingdee.md §0.3 item 1: non-200 is IIS, not Kingdee)
_UNAVAILABLE = (
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN">\n<html><head>'
    "<title>Service Unavailable</title></head><body><h2>Service Unavailable</h2><hr>"
    "<p>HTTP Error 503. The service is unavailable.</p></body></html>"
)
_RUNTIME_ERROR = (
    "<html><head><title>Runtime Error</title></head><body><h1>Server Error in '/k3cloud' "
    "Application.</h1><h2><i>Runtime Error</i></h2></body></html>"
)
_CALL_LIMITED = "调用次数超出限制，请稍后再试"
# MsgCode faults (contract §3.3; texts UNCONFIRMED, composed after §3.4's style)
_MSGCODE_TEXT = {
    2: "没有权限：当前用户没有该业务对象的操作权限",
    4: "服务器异常：未将对象引用设置到对象的实例。",
    6: "数据库操作失败：事务与另一个进程被死锁在锁资源上，请重新运行该事务。",
    7: "许可错误：当前产品许可已过期或已超出站点数",
    13: "网控冲突：数据正被其他用户操作，请稍后再试",
    14: _CALL_LIMITED,
    15: "系统不允许管理员用户登录WebAPI",
}
_SESSION_COOKIES = ("kdservice-sessionid", "ASP.NET_SessionId")


def _session_id(request: web.Request) -> str | None:
    for header in ("kdservice-sessionid", "SID"):
        if request.headers.get(header):
            return request.headers[header]
    for name in _SESSION_COOKIES:
        if request.cookies.get(name):
            return request.cookies[name]
    return None


def _cookies(session: Session) -> dict[str, str]:
    return {"kdservice-sessionid": session.id, "ASP.NET_SessionId": session.id}


def _freshness(request: web.Request, state: SandboxState) -> str | None:
    """Optional timestamp-skew and nonce-replay checks (contract §8.2: default off)."""
    c = state.config
    stamp = request.headers.get("x-api-timestamp", "0")
    if c.signature_max_skew_seconds:
        ts = float(stamp) if stamp.isdigit() else 0.0
        ts = ts / 1000 if ts > 1e11 else ts  # the Java SDK sends milliseconds
        if abs(time.time() - ts) > c.signature_max_skew_seconds:
            return f"请求时间戳已过期：{stamp}"
    if c.reject_replayed_nonce:
        key = (request.headers.get("x-api-nonce", ""), request.headers.get("X-Api-Signature", ""))
        if key in state.seen_nonces:
            return "请求已被使用（重复的 nonce）"
        state.seen_nonces.add(key)
    return None


def _authenticate(
    request: web.Request, state: SandboxState
) -> tuple[Session | None, dict[str, str], dict[str, Any] | None]:
    """(session, cookies to set, error envelope) for one business call (contract §8.2)."""
    c = state.config
    signed = "X-Kd-Appkey" in request.headers
    if signed:
        try:
            app = verify_signature(request.headers, request.rel_url.path, {c.app_id: c.app_secret})
        except SignatureError:
            state.stats["signature_rejected"] += 1
            return None, {}, failure_envelope(c.bad_signature_message, 1)
        problem = _freshness(request, state)
        if app.acct_id != c.acct_id or app.username != c.username or problem:
            state.stats["signature_rejected"] += 1
            return None, {}, failure_envelope(problem or c.bad_signature_message, 1)
    sid = _session_id(request)
    if sid:
        session = state.live_session(sid)
        if session is not None:
            return session, {}, None
        state.stats["session_lost"] += 1
        return None, {}, failure_envelope(c.session_lost_message, 1)
    if signed:
        session = state.new_session(c.acct_id, c.username, 2052)
        return session, _cookies(session), None
    state.stats["session_lost"] += 1
    return None, {}, failure_envelope(c.session_lost_message, 1)


def _latency(method: str, params: dict[str, Any], state: SandboxState) -> float:
    c = state.config
    if method not in ("save", "batchsave"):
        return c.latency_call_seconds
    packages, rows, batch_count = package_count(params, method == "batchsave")
    threads = batch_count if packages > batch_count else 1
    return (
        c.latency_call_seconds
        + packages * c.latency_package_seconds / threads
        + rows * c.latency_row_seconds
    )


def _dispatch(
    method: str, params: dict[str, Any], session: Session, state: SandboxState, fault: str | None
) -> Any:
    if method in ("save", "batchsave"):
        keep = None
        if fault == "commit_then_drop":
            packages = package_count(params, method == "batchsave")[0]
            keep = math.ceil(packages * state.config.drop_keep_fraction)
        return do_save(params, state, batch=method == "batchsave", keep=keep)
    if method in ATTACHMENT_METHODS or is_attachment_query(method, params):  # kingdee.md §10.4
        return do_attachment(method, params, state)
    if method == "queryasyncresult":
        return do_async_result(params, state)
    if method in ("executebillquery", "billquery"):
        return do_query(params, state, as_objects=method == "billquery")
    if method == "view":
        return do_view(params, session, state)
    return _dispatch_other(method, params, state)


def _dispatch_other(method: str, params: dict[str, Any], state: SandboxState) -> Any:
    """Form metadata (kingdee.md §10.3) and the status operations (§5.2–5.4)."""
    if method == "querybusinessinfo":
        return do_business_info(params)
    if method in OPERATIONS:
        return do_operation(method, params, state)
    return failure_envelope(f"不支持的服务 {method}", 8)


def _data_fault(method: str, params: dict[str, Any], state: SandboxState) -> str | None:
    """A write carrying a bill of ``response_error_numbers`` throws on the server."""
    numbers = state.config.response_error_numbers
    if not numbers or method not in ("save", "batchsave"):
        return None
    hit = set(numbers).intersection(bill_numbers(params, method == "batchsave"))
    return "response_error" if hit else None


def _html(status: int, page: str) -> web.Response:
    return web.Response(status=status, text=page, content_type="text/html")


def _refusal(method: str, message: str, msg_code: int) -> web.Response:
    """A failure envelope as the service sends it: ExecuteBillQuery wraps it ``[[..]]`` (§4.2)."""
    envelope = failure_envelope(message, msg_code)
    return json_response([[envelope]] if method == "executebillquery" else envelope)


def _transport_fault(fault: str | None, state: SandboxState, method: str) -> web.Response | None:
    if fault and fault.startswith("http_"):
        state.stats["fault_http_5xx"] += 1
        return _html(int(fault[5:]), _UNAVAILABLE)
    if fault == "html_200":
        state.stats["fault_html_200"] += 1
        return _html(200, _RUNTIME_ERROR)
    if fault and fault.startswith("msgcode_"):
        code = int(fault[8:])
        state.stats[fault] += 1
        return _refusal(method, _MSGCODE_TEXT[code], code)
    if fault == "response_error":
        state.stats["fault_response_error"] += 1
        return response_error(state.config.response_error_message)
    return None


async def _overload(state: SandboxState) -> web.Response | None:
    """Past the queue-depth threshold: extra latency, and some calls refused (§8.5 item 24)."""
    c = state.config
    if not c.overload_queue_depth or state.waiting <= c.overload_queue_depth:
        return None
    state.stats["overloaded"] += 1
    await asyncio.sleep(c.overload_extra_seconds)
    if state.rng.random() >= c.overload_error_rate:
        return None
    if state.rng.random() < 0.5:
        state.stats["fault_http_5xx"] += 1
        return _html(500, _UNAVAILABLE)
    state.stats["msgcode_14"] += 1
    return json_response(failure_envelope(_CALL_LIMITED, 14))


async def _process(
    state: SandboxState, method: str, params: dict[str, Any], session: Session, fault: str | None
) -> Any:
    """Wait for the session (FIFO) and a worker, take the simulated time, run the operation."""
    state.waiting += 1
    try:
        await state.lock_for(session.id).acquire()
    finally:
        state.waiting -= 1
    try:
        async with state.workers:
            await asyncio.sleep(_latency(method, params, state))
            if fault == "slow":
                state.stats["fault_slow"] += 1
                await asyncio.sleep(state.config.slow_seconds)
            payload = _dispatch(method, params, session, state, fault)
    finally:
        state.lock_for(session.id).release()
    if method == "batchsave" and params.get("beginmethod"):
        task_id = uuid.uuid4().hex
        state.async_results[task_id] = payload
        payload = async_started(task_id)
    return payload


async def _business(
    request: web.Request, method: str, params: dict[str, Any]
) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    session, cookies, error = _authenticate(request, state)
    if error is not None or session is None:
        return json_response([[error]] if method == "executebillquery" else error)
    fault = state.draw_fault(method) or _data_fault(method, params, state)
    if fault == "session_expired":  # the session ends just before this call (§1.5)
        state.sessions.pop(session.id, None)
        state.stats["session_lost"] += 1
        return _refusal(method, state.config.session_lost_message, 1)
    refused = _transport_fault(fault, state, method) or await _overload(state)
    if refused is not None:
        return refused
    payload = await _process(state, method, params, session, fault)
    if fault == "empty_200":  # ran (a write committed), then nothing came back (§3.5)
        state.stats["fault_empty_200"] += 1
        return web.Response(status=200, body=b"", headers={"Content-Type": "application/json"})
    if fault == "commit_then_drop":
        state.stats["fault_commit_then_drop"] += 1
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError
    return json_response(payload, cookies=cookies)


def _method_of(request: web.Request) -> str | None:
    path = request.match_info["path"]
    service = path.rsplit("/", 1)[-1]
    if not service.lower().endswith(SUFFIX):
        return None
    method = service[: -len(SUFFIX)].rsplit(".", 1)[-1].lower()
    return method if method in KNOWN else None


async def kdsvc(request: web.Request) -> web.StreamResponse:
    """Every WebAPI call: fault knobs, envelope parsing, auth, then the operation."""
    state = request.app[STATE_KEY]
    method = _method_of(request)
    if method is None:
        return web.Response(status=404, text="404 - File or directory not found.")
    body = await request.read()
    state.stats[f"calls_{method}"] += 1
    try:
        params = parse_envelope(method, body)
    except EnvelopeError as exc:
        return response_error(str(exc), "Newtonsoft.Json.JsonReaderException")
    if method == "getdatacenterlist":
        c = state.config
        return json_response([{"Id": c.acct_id, "Number": c.acct_id, "Name": "dingdee sandbox"}])
    if method in LOGIN_METHODS:
        payload, session = do_login(method, params, state)
        return json_response(payload, cookies=_cookies(session) if session else None)
    if method == "logout":
        sid = _session_id(request)
        if sid:
            state.sessions.pop(sid, None)
        return json_response(True)
    return await _business(request, method, params)


def create_app(state: SandboxState | None = None) -> web.Application:
    """The sandbox as an aiohttp application (in-process contract tests build it directly)."""
    app = web.Application(client_max_size=64 << 20)
    app[STATE_KEY] = state or SandboxState()
    add_control_routes(app, STATE_KEY)
    app.add_routes(attachment_routes(STATE_KEY))
    add_masterdata_routes(app, STATE_KEY)
    app.router.add_post(r"/{path:.*\.[cC][oO][mM][mM][oO][nN]\.[kK][dD][sS][vV][cC]}", kdsvc)
    return app
