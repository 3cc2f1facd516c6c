"""The v1.0 host (``api.dingtalk.com``): access token, instance ids, instance (contract §1.2,
§4, §7.1–§7.5).

Token in the ``x-acs-dingtalk-access-token`` header only; errors are 4xx/5xx with
``{"code", "message", "requestid"}``; unknown ``/v1.0/`` paths answer 404
``InvalidAction.NotFound``. Served on the same base URL as the old host (path-prefix routing).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from dingdee_sandbox.dingtalk.gate import Refusal, admit
from dingdee_sandbox.dingtalk.keys import API, APP, BODY, STATE
from dingdee_sandbox.dingtalk.listing import CapError, ListError, page, parse_int, validate
from dingdee_sandbox.dingtalk.oldhost import transport_refusal
from dingdee_sandbox.dingtalk.render import render_v1
from dingdee_sandbox.dingtalk.responses import v1_error, v1_json

__all__ = ["v1_routes"]

HEADER = "x-acs-dingtalk-access-token"
_DENIED = "您的企业应用调用钉钉开放平台当前接口的所有请求都被暂时禁用了"
_SIMPLE: dict[str, tuple[int, str, str]] = {
    "token_missing": (400, "AuthenticationFailed.MissingParameter", f"缺少参数：{HEADER}"),
    "forbidden": (
        403,
        "Forbidden.AccessDenied.AccessTokenPermissionDenied",
        "没有调用该接口的权限",
    ),
    "qps": (403, "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi", _DENIED),
    "global_qps": (403, "Forbidden.AccessDenied.QpsLimitForApi", _DENIED),
    "quota": (403, "Forbidden.AccessDenied.ApiCountLimitForOrg", "您的企业本月api调用量已超过限制"),
    "busy": (500, "systemError", "系统异常"),
}


def refusal_response(request: web.Request, refusal: Refusal) -> web.Response:
    """Render a refusal the v1.0 way (non-2xx with ``code``)."""
    state = request.app[STATE]
    if refusal.kind in ("token_invalid", "token_expired"):
        return v1_error(
            state.faults.v1_auth_status, "InvalidAuthentication", "不合法的access_token"
        )
    if refusal.kind in _SIMPLE:
        return v1_error(*_SIMPLE[refusal.kind])
    return transport_refusal(request, refusal)


async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        data = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


async def access_token(request: web.Request) -> web.Response:
    """``POST /v1.0/oauth2/accessToken`` ``{"appKey", "appSecret"}`` → accessToken, expireIn."""
    request[API] = "accessToken"
    state = request.app[STATE]
    body = await _json_body(request)
    key, secret = body.get("appKey"), body.get("appSecret")
    if isinstance(key, str):
        request[APP] = key
    if not key or state.apps.get(str(key)) != secret:
        return v1_error(400, "invalidClientIdOrSecret", "无效的clientId或者clientSecret")
    return v1_json({"accessToken": state.issue_token(str(key), "v1"), "expireIn": 7200})


async def admitted(request: web.Request, api: str) -> web.Response | None:
    """Admit one v1.0 data call (token, limits, faults); the refusal to answer, else None."""
    request[API] = api
    app_key, refusal = await admit(request.app[STATE], request.headers.get(HEADER), "v1", api)
    if app_key is not None:
        request[APP] = app_key
    return refusal_response(request, refusal) if refusal else None


def _success(request: web.Request, result: dict[str, Any]) -> web.Response:
    flag = request.app[STATE].faults.v1_success_string
    return v1_json({"result": result, "success": "true" if flag else True})


async def instance_ids(request: web.Request) -> web.Response:
    """``POST /v1.0/workflow/processes/instanceIds/query``: one page of ids."""
    failure = await admitted(request, "listids_v1")
    if failure is not None:
        return failure
    state, body = request.app[STATE], await _json_body(request)
    request[BODY] = body
    try:
        token, size = parse_int(body.get("nextToken"), "invalidNextToken"), body.get("maxResults")
        if token is None:
            raise ListError("invalidNextToken")
        max_results = parse_int(size, "invalidMaxResults")
        query = validate(
            state,
            body.get("processCode"),
            parse_int(body.get("startTime"), "invalidInstanceListIdsStartTime"),
            parse_int(body.get("endTime"), "invalidEndTime"),
            token,
            21 if max_results is None else max_results,
            [str(u) for u in body.get("userIds") or []],
            [str(s) for s in body.get("statuses") or []],
        )
    except ListError as exc:
        return v1_error(400, exc.code, str(exc))
    try:
        ids, next_cursor = page(state, query)
    except CapError:
        return v1_error(400, "internalError", "the listing cap was reached")
    result: dict[str, Any] = {"list": ids}
    if next_cursor is not None:
        result["nextToken"] = next_cursor if state.faults.v1_next_token_int else str(next_cursor)
    return _success(request, result)


async def process_instance(request: web.Request) -> web.Response:
    """``GET /v1.0/workflow/processInstances?processInstanceId=``: one instance, camelCase."""
    failure = await admitted(request, "get_v1")
    if failure is not None:
        return failure
    state = request.app[STATE]
    pid = request.query.get("processInstanceId")
    if not pid:
        return v1_error(400, "invalidParameter", "获取单个审批实例详情参数错误")
    inst = state.instances.get(pid)
    if inst is None:
        return v1_error(400, "processInstanceNotExist", "审批实例不存在")
    return _success(request, render_v1(inst))


async def unknown(request: web.Request) -> web.Response:
    """Any other ``/v1.0/`` path: 404 ``InvalidAction.NotFound``."""
    request[API] = "unknown_v1"
    return v1_error(
        404,
        "InvalidAction.NotFound",
        "Specified api is not found, please check your url and method.",
    )


def v1_routes() -> list[web.RouteDef]:
    """The v1.0 host's routes, mounted under ``/v1.0/`` beside the old host."""
    return [
        web.post("/v1.0/oauth2/accessToken", access_token),
        web.post("/v1.0/workflow/processes/instanceIds/query", instance_ids),
        web.get("/v1.0/workflow/processInstances", process_instance),
    ]


def v1_fallback() -> web.RouteDef:
    """The catch-all for unknown ``/v1.0/`` paths (registered after every other route)."""
    return web.route("*", "/v1.0/{tail:.*}", unknown)
