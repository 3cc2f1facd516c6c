"""Control API for the base data of ``masterdata`` (JSON under ``/_sandbox/basedata/``).

* ``POST /_sandbox/basedata/employees`` ``{"number", "name", "staff_number"?, "mobile"?,
  "document_status"? (default C), "forbid_status"? (default A)}`` → 201 with the record; 409 when
  the number exists, 400 on bad input. A new hire that appears in Kingdee (issue 14).
* ``POST /_sandbox/basedata/{form_id}/{number}/disable`` and ``…/enable`` → the record with
  ``FForbidStatus`` B / A (kingdee.md §10.2 status table); 404 when unknown.
* ``POST /_sandbox/basedata/synthetic`` ``{"employees": N}`` → ``{"added", "total"}``: N cheap
  synthetic employees for the 50 000-employee refresh bench (also ``--synthetic-employees``).

Records are listed with the existing ``GET /_sandbox/bills?form_id=BD_Empinfo``.
"""

from __future__ import annotations

from aiohttp import web

from dingdee_sandbox.jsonapi import json_body as _body
from dingdee_sandbox.jsonapi import json_response as _json
from dingdee_sandbox.kingdee.masterdata import add_employee, seed_synthetic_employees, set_forbid
from dingdee_sandbox.kingdee.state import SandboxState

__all__ = ["add_masterdata_routes"]

MAX_SYNTHETIC = 1_000_000


def add_masterdata_routes(app: web.Application, key: web.AppKey[SandboxState]) -> None:
    """Register the ``/_sandbox/basedata/`` endpoints on ``app`` (state under ``key``)."""

    async def new_employee(request: web.Request) -> web.Response:
        body = await _body(request)
        number, name = str(body.get("number") or ""), str(body.get("name") or "")
        if not number or not name:
            return _json({"error": "number and name are required"}, 400)
        store = request.app[key].store
        if store.find("BD_Empinfo", number) is not None:
            return _json({"error": f"employee {number} exists"}, 409)
        try:
            record = add_employee(
                store,
                number,
                name,
                staff_number=body.get("staff_number"),
                mobile=str(body.get("mobile") or ""),
                document_status=str(body.get("document_status") or "C"),
                forbid_status=str(body.get("forbid_status") or "A"),
            )
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)
        return _json(record.as_json(), 201)

    async def forbid(request: web.Request) -> web.Response:
        info = request.match_info
        try:
            record = set_forbid(
                request.app[key].store, info["form_id"], info["number"], info["op"] == "disable"
            )
        except KeyError:
            return _json({"error": f"no {info['form_id']} {info['number']}"}, 404)
        return _json(record.as_json())

    async def synthetic(request: web.Request) -> web.Response:
        count = (await _body(request)).get("employees")
        if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_SYNTHETIC:
            return _json({"error": f"employees must be an integer in [0, {MAX_SYNTHETIC}]"}, 400)
        store = request.app[key].store
        added = seed_synthetic_employees(store, count)
        return _json({"added": added, "total": len(store.records.get("BD_EMPINFO", {}))})

    app.router.add_post("/_sandbox/basedata/employees", new_employee)
    app.router.add_post("/_sandbox/basedata/synthetic", synthetic)
    app.router.add_post("/_sandbox/basedata/{form_id}/{number}/{op:disable|enable}", forbid)
