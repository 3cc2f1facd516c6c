"""Work notifications (工作通知) on the old host, and what they delivered (issue #18).

``POST /topapi/message/corpconversation/asyncsend_v2?access_token=`` is not in the contract
(dingtalk.md); it follows DingTalk's public page, read for this sandbox at
https://help.dingtalk.io/open/development/asynchronous-sending-of-enterprise-session-messages
(the Chinese original:
https://open.dingtalk.com/document/orgapp/asynchronous-sending-of-enterprise-session-messages):

* body ``agent_id`` (the app's AgentId), ``userid_list`` (comma-separated userids),
  ``msg`` (``{"msgtype": "text", "text": {"content": …}}``; other types are stored as sent);
  answer ``{"errcode": 0, "errmsg": "ok", "task_id": N, "request_id": …}``;
* the page's limits: "Only one message notification with the same content can be sent to the
  same employee per day", at most 500 a day per employee from an internal app, at most 5 000
  recipients per call — and "after the following limits are exceeded, the API returns success,
  but users cannot receive the messages": such a recipient is stored undelivered with the
  ``getsendresult`` error code (143106 same content, 143105 daily cap).

Errors of the call itself: 40035 (参数非法) for a missing or malformed ``agent_id``,
``userid_list`` or ``msg``, and for an ``agent_id`` that is not the calling app's; the page
we read lists no code for those cases, so this generic old-host code is the sandbox's choice.
The call passes the same gate as every data call (token, per-(app, API) QPS, faults, quota).

Control API: ``GET /_sandbox/notifications[?userid=]`` → ``{"notifications": [{task_id,
agent_id, userid, msgtype, content, delivered, dropped, at_ms}]}``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from aiohttp import web

from dingdee_sandbox.demo_org import DEMO_APP
from dingdee_sandbox.dingtalk.keys import APP, STATE
from dingdee_sandbox.dingtalk.oldhost import admitted
from dingdee_sandbox.dingtalk.responses import old_flat, old_ok
from dingdee_sandbox.jsonapi import json_response as _json

__all__ = ["NOTICES", "Notice", "Notices", "notify_routes"]

_DAY_MS = 24 * 3600 * 1000
_CST_MS = 8 * 3600 * 1000
_DAILY_CAP, _RECIPIENTS_MAX = 500, 5000
_SAME_CONTENT = "143106 单应用给单人推送重复消息超限"
_DAILY = "143105 单应用给单人每日推送量超限"


@dataclass(frozen=True, slots=True)
class Notice:
    """One recipient of one ``asyncsend_v2`` call."""

    task_id: int
    agent_id: int
    userid: str
    msgtype: str
    content: str
    delivered: bool
    dropped: str | None
    at_ms: int


@dataclass
class Notices:
    """Every recipient of every call; the AgentId of each app."""

    agents: dict[str, int] = field(default_factory=lambda: {DEMO_APP.app_key: DEMO_APP.agent_id})
    sent: list[Notice] = field(default_factory=list)
    _task: int = 700_000

    def send(self, agent_id: int, userids: list[str], msg: dict[str, Any], now_ms: int) -> int:
        """Store one call; the task id."""
        self._task += 1
        msgtype = str(msg.get("msgtype") or "")
        part = msg.get(msgtype)
        content = (
            str(part.get("content", ""))
            if isinstance(part, dict) and msgtype == "text"
            else orjson.dumps(part).decode()
        )
        day = (now_ms + _CST_MS) // _DAY_MS
        for userid in userids:
            today = [
                n
                for n in self.sent
                if n.delivered
                and n.agent_id == agent_id
                and n.userid == userid
                and (n.at_ms + _CST_MS) // _DAY_MS == day
            ]
            dropped = None
            if any(n.content == content and n.msgtype == msgtype for n in today):
                dropped = _SAME_CONTENT
            elif len(today) >= _DAILY_CAP:
                dropped = _DAILY
            notice = Notice(
                self._task, agent_id, userid, msgtype, content, dropped is None, dropped, now_ms
            )
            self.sent.append(notice)
        return self._task


NOTICES: web.AppKey[Notices] = web.AppKey("notices", Notices)


def _parsed(body: dict[str, Any], known: int | None) -> tuple[int, list[str], dict[str, Any]] | str:
    """``(agent_id, userids, msg)``, or the name of the parameter that is missing or illegal."""
    try:
        agent_id = int(body.get("agent_id") or 0)
    except (TypeError, ValueError):
        return "agent_id"
    if agent_id <= 0 or (known is not None and agent_id != known):
        return "agent_id"
    userids = [u for u in str(body.get("userid_list") or "").split(",") if u.strip()]
    if not userids or len(userids) > _RECIPIENTS_MAX:
        return "userid_list"
    msg = body.get("msg")
    if isinstance(msg, str):
        try:
            msg = orjson.loads(msg)
        except orjson.JSONDecodeError:
            return "msg"
    if not isinstance(msg, dict) or not msg.get("msgtype"):
        return "msg"
    return agent_id, userids, msg


async def asyncsend_v2(request: web.Request) -> web.Response:
    """``POST /topapi/message/corpconversation/asyncsend_v2`` (see the module docstring)."""
    body, failure = await admitted(request, "message.corpconversation.asyncsend_v2")
    if failure is not None:
        return failure
    notices = request.app[NOTICES]
    parsed = _parsed(body, notices.agents.get(str(request.get(APP))))
    if isinstance(parsed, str):
        return old_flat(40035, f"参数非法: {parsed}")
    task = notices.send(*parsed, request.app[STATE].now_ms())
    return old_ok({"task_id": task})


async def listing(request: web.Request) -> web.Response:
    """``GET /_sandbox/notifications[?userid=]``."""
    userid = request.query.get("userid")
    sent = [asdict(n) for n in request.app[NOTICES].sent if userid in (None, n.userid)]
    return _json({"notifications": sent})


def notify_routes() -> list[web.RouteDef]:
    """The work-notification call (before the old host's ``/topapi`` catch-all) and its view."""
    return [
        web.post("/topapi/message/corpconversation/asyncsend_v2", asyncsend_v2),
        web.get("/_sandbox/notifications", listing),
    ]
