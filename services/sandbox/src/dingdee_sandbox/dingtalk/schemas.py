"""Form schemas per processCode (contract dingtalk.md §9.5.1, simulator notes §9.6 item 5).

``GET /v1.0/workflow/forms/schemas/processCodes?processCode=`` answers ``{"result": {…}}`` with
**no** ``success`` field (§9.5.1); an unknown code is HTTP 400 ``formNotExist``, a missing query
400 ``invalidParameter``, a POST on the path 404 (§9.5.1 [OBS]). The schemas are derived from the
demo templates the generator fills in (``generator.petty_cash_form`` / ``department_form``), so
schema and instances always agree. ``POST /_sandbox/schemas/{processCode}`` with ``{"rename":
{"补单事由": "报销事由"}}`` renames components (and table columns) the way DingTalk's form designer
does, and moves ``gmtModified`` to the sandbox clock (§9.5.1: "use it to invalidate cached
schemas"); ``{"reset": true}`` restores the demo template.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
from aiohttp import web

from dingdee_sandbox.dingtalk.keys import STATE
from dingdee_sandbox.dingtalk.responses import v1_error, v1_json
from dingdee_sandbox.dingtalk.templates import demo_schemas
from dingdee_sandbox.dingtalk.v1host import admitted

__all__ = ["SCHEMA_PATH", "schema_routes"]

SCHEMA_PATH = "/v1.0/workflow/forms/schemas/processCodes"


async def schema(request: web.Request) -> web.Response:
    """``GET /v1.0/workflow/forms/schemas/processCodes?processCode=``."""
    failure = await admitted(request, "schema_v1")
    if failure is not None:
        return failure
    code = request.query.get("processCode")
    if not code:
        return v1_error(400, "invalidParameter", "processCode 参数缺失")
    found = request.app[STATE].schemas.get(code)
    if found is None:
        return v1_error(400, "formNotExist", "审批表单模板不存在")
    return v1_json({"result": found})


async def post_not_found(request: web.Request) -> web.Response:
    """POST on the GET path: 404 (§9.5.1 [OBS])."""
    return v1_error(
        404,
        "InvalidAction.NotFound",
        "Specified api is not found, please check your url and method.",
    )


def _rename(items: list[dict[str, Any]], renames: dict[str, str]) -> int:
    count = 0
    for item in items:
        props = item.get("props") or {}
        if props.get("label") in renames:
            props["label"] = renames[props["label"]]
            count += 1
        count += _rename(item.get("children") or [], renames)
    return count


async def control(request: web.Request) -> web.Response:
    """``POST /_sandbox/schemas/{process_code}``: ``{"rename": {old: new}}`` or ``{"reset": 1}``."""
    state = request.app[STATE]
    code = request.match_info["process_code"]
    if code not in state.schemas:
        return web.json_response({"error": f"no template {code}"}, status=404)
    try:
        body = orjson.loads(await request.read() or b"{}")
    except orjson.JSONDecodeError:
        return web.json_response({"error": "body is not JSON"}, status=400)
    if body.get("reset"):
        state.schemas[code] = copy.deepcopy(demo_schemas()[code])
        return web.json_response(state.schemas[code])
    renames = body.get("rename")
    if not isinstance(renames, dict) or not renames:
        return web.json_response({"error": 'expected {"rename": {old: new}}'}, status=400)
    template = state.schemas[code]
    renamed = _rename(
        template["schemaContent"]["items"], {str(k): str(v) for k, v in renames.items()}
    )
    if not renamed:
        return web.json_response({"error": f"no component labelled {sorted(renames)}"}, status=400)
    template["gmtModified"] = str(state.now_ms())
    return web.json_response(template)


def schema_routes() -> list[web.RouteDef]:
    """The schema API and its control endpoint (registered before the ``/v1.0/`` catch-all)."""
    return [
        web.get(SCHEMA_PATH, schema),
        web.post(SCHEMA_PATH, post_not_found),
        web.post("/_sandbox/schemas/{process_code}", control),
    ]
