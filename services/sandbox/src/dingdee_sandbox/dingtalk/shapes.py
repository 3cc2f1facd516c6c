"""Answer shapes real DingTalk sends and the plain handlers never do (knobs in ``config.Faults``).

* ``punished``: the per-egress-IP anti-abuse ban (dingtalk.md line 522, §5.1, and lines 726–727,
  §7.6: 10 000 requests in 20 s, then 5 minutes of ``{"status":1111,"wait":5,"source":"x5",
  "punish":"deny","uuid":"…"}``, HTTP status UNCONFIRMED, hence ``punish_status``) for every call
  of either host, token calls included.
* ``errcode_string``: the old host's ``errcode`` sent as a string (``"0"``, ``"90018"``), as some
  captures show for numeric fields (dingtalk.md lines 141–142: ``sub_code`` already is one).
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from aiohttp import web

from dingdee_sandbox.dingtalk.keys import STATE

__all__ = ["answer_shapes"]


@web.middleware
async def answer_shapes(request: web.Request, handler: Any) -> web.StreamResponse:
    """Ban every call while ``punished``; stringify old-host ``errcode`` when asked to."""
    if request.path.startswith(("/_sandbox", "/connect")):
        response: web.StreamResponse = await handler(request)
        return response
    faults = request.app[STATE].faults
    if faults.punished:
        body = {
            "status": 1111,
            "wait": 5,
            "source": "x5",
            "punish": "deny",
            "uuid": uuid.uuid4().hex,
        }
        return web.Response(
            body=orjson.dumps(body), status=faults.punish_status, content_type="application/json"
        )
    response = await handler(request)
    if not faults.errcode_string or not isinstance(response, web.Response):
        return response
    raw = response.body
    if isinstance(raw, bytes) and raw.startswith(b'{"errcode"'):
        data = orjson.loads(raw)
        data["errcode"] = str(data["errcode"])
        response.body = orjson.dumps(data)
    return response
