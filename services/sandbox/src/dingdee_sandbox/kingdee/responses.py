"""Response bodies shaped exactly as Kingdee sends them (contract §1.2, §1.5, §3, §4.2, §0.4)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

__all__ = [
    "SESSION_LOST",
    "json_response",
    "login_result",
    "response_error",
    "status_failure",
    "status_success",
]

SESSION_LOST = "会话信息已丢失，请重新登录"
CONTENT_TYPE = "application/json; charset=utf-8"


def json_response(payload: Any, *, cookies: dict[str, str] | None = None) -> web.Response:
    """HTTP 200 with Kingdee's content type; ``cookies`` become ``Set-Cookie`` headers."""
    response = web.Response(body=orjson.dumps(payload), headers={"Content-Type": CONTENT_TYPE})
    for name, value in (cookies or {}).items():
        response.set_cookie(name, value, path="/", httponly=name == "ASP.NET_SessionId")
    return response


def status_success(successes: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "IsSuccess": True,
        "Errors": [],
        "SuccessEntitys": successes,
        "SuccessMessages": [],
        "MsgCode": 0,
    }


def status_failure(
    errors: list[dict[str, Any]], msg_code: int, successes: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "ErrorCode": 500,
        "IsSuccess": False,
        "Errors": errors,
        "SuccessEntitys": successes or [],
        "SuccessMessages": [],
        "MsgCode": msg_code,
    }


def failure_envelope(message: str, msg_code: int, field: str | None = None) -> dict[str, Any]:
    """``{"Result": {"ResponseStatus": ...}}`` carrying one error (session lost, bad request)."""
    error = {"FieldName": field, "Message": message, "DIndex": 0}
    return {"Result": {"ResponseStatus": status_failure([error], msg_code)}}


def response_error(message: str, class_name: str = "System.Exception") -> web.Response:
    """An unhandled server exception: the ``response_error:`` prefix plus .NET exception JSON."""
    payload = {
        "ClassName": class_name,
        "Message": message,
        "InnerExWrapper": {"ExceptionType": class_name, "Message": message, "IsEmpty": False},
        "_httpCode": 500,
        "HResult": -2146233088,
        "StackTraceString": "   at Kingdee.BOS.WebApi.ServicesStub (sandbox)",
        "Source": "Kingdee.BOS.WebApi.ServicesStub",
    }
    body = b"response_error:" + orjson.dumps(payload)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def login_result(
    result_type: int,
    message: str | None,
    *,
    session_id: str | None = None,
    user: str = "",
    acct_id: str = "",
) -> dict[str, Any]:
    """The flat ``LoginResult`` object of §1.2 (success when ``result_type == 1``)."""
    ok = result_type == 1
    context = (
        {
            "UserLocale": "zh-CN",
            "LogLocale": "zh-CN",
            "DBid": acct_id,
            "DatabaseType": 3,
            "SessionId": (session_id or "").replace("-", "")[:24],
            "UserId": 100008,
            "UserName": user,
            "DisplayVersion": "9.0.553.10",
            "DataCenterName": "dingdee sandbox",
            "DataCenterNumber": acct_id,
            "UserToken": session_id,
            "ContextResultType": 0,
            "IsDeployAsPublicCloud": False,
        }
        if ok
        else None
    )
    return {
        "Message": message,
        "MessageCode": "CheckPasswordPolicy",
        "LoginResultType": result_type,
        "Context": context,
        "KDSVCSessionId": session_id if ok else None,
        "FormId": None,
        "RedirectFormParam": None,
        "FormInputObject": None,
        "ErrorStackTrace": None,
        "Lcid": 0,
        "AccessToken": None,
        "CustomParam": {},
        "KdAccessResult": None,
        "IsSuccessByAPI": ok,
    }
