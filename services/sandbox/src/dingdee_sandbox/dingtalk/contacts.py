"""Contacts (通讯录) on the old host and their control API: dingtalk.md §9.1, §9.2, §9.6 item 1.

Data calls (``POST /topapi/...?access_token=``, JSON or form body, HTTP 200 with ``errcode``):
``v2/user/get`` (§9.1.1), ``user/listid`` (§9.1.2), ``v2/user/list`` (§9.1.3, offset cursor,
``size`` 1…100, ``cursor`` 0…100000), ``v2/department/listsub`` and ``listsubid`` (§9.1.4),
``v2/department/get`` (§9.1.5). They pass the same gate as every data call (token, per-(app, API)
QPS, injected faults, request log) but are exempt from the monthly quota unless the ``metered``
knob says otherwise (dingtalk.md lines 791–793). Optional empty fields are omitted, ``mobile`` /
``email`` only with the field permissions (lines 804–807); real JSON types (lines 847–849).

Control API (JSON): ``GET|POST /_sandbox/contacts/users``, ``POST|DELETE
/_sandbox/contacts/users/{userid}``, ``GET|POST /_sandbox/contacts/departments``, ``POST|DELETE
/_sandbox/contacts/departments/{dept_id}``, ``GET|POST /_sandbox/contacts/knobs``. Each change
emits its §9.2 contact event over Stream (``user_add_org``, ``user_modify_org``,
``user_leave_org``, ``org_dept_create``, ``org_dept_modify``, ``org_dept_remove``).
Errors: 400 bad input, 404 unknown, 409 taken or not empty.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from dingdee_sandbox.dingtalk.directory import ROOT, ContactUser, Dept, Directory
from dingdee_sandbox.dingtalk.keys import STATE
from dingdee_sandbox.dingtalk.oldhost import admitted
from dingdee_sandbox.dingtalk.responses import old_flat, old_ok
from dingdee_sandbox.jsonapi import json_body as _body
from dingdee_sandbox.jsonapi import json_response as _json

__all__ = ["contact_routes"]

MAX_SIZE = 100  # §9.1.3: TOP SDK validator 1…100
MAX_CURSOR = 100_000  # §9.1.3: TOP SDK validator 0…100000
ORDER_FIELDS = ("entry_asc", "entry_desc", "modify_asc", "modify_desc", "custom")
_NO_USER = {60121: "找不到该用户", 33012: "无效的userId"}  # lines 851–856


class _Bad(Exception):
    """A parameter is missing (400002) or illegal (40035)."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(errmsg)
        self.errcode, self.errmsg = errcode, errmsg


def _int(body: dict[str, Any], key: str, *, required: bool) -> int | None:
    value = body.get(key)
    if value is None or value == "":
        if required:
            raise _Bad(400002, "无效的参数")
        return None
    if isinstance(value, bool):
        raise _Bad(40035, "参数非法")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _Bad(40035, "参数非法") from None


def _unionid(userid: str) -> str:
    return hashlib.sha256(f"unionid:{userid}".encode()).hexdigest()[:28]


def _user_fields(user: ContactUser, d: Directory) -> dict[str, Any]:
    """The fields ``user/get`` and ``user/list`` share; optional ones omitted when empty."""
    out: dict[str, Any] = {
        "userid": user.userid,
        "unionid": _unionid(user.userid),
        "name": user.name,
        "avatar": "",
        "job_number": user.job_number,  # "" when not maintained (§9.1.1 table)
        "hide_mobile": False,
        "dept_id_list": list(user.dept_ids),
        "active": True,
        "admin": False,
        "boss": False,
        "exclusive_account": False,
    }
    if user.title:
        out["title"] = user.title
    if user.mobile and d.knobs.mobile_permission:
        out["mobile"], out["state_code"] = user.mobile, "86"
    if user.email and d.knobs.email_permission:
        out["email"] = user.email
    if user.hired_date is not None:
        out["hired_date"] = user.hired_date
    return out


def _user_detail(user: ContactUser, d: Directory) -> dict[str, Any]:
    """§9.1.1 ``result``."""
    out = _user_fields(user, d)
    out.update(
        senior=False,
        real_authed=True,
        dept_order_list=[{"dept_id": i, "order": d.dept_order(user, i)} for i in user.dept_ids],
        leader_in_dept=[{"dept_id": i, "leader": i in user.leader_dept_ids} for i in user.dept_ids],
        role_list=[],
        union_emp_ext={},
    )
    if user.manager_userid:
        out["manager_userid"] = user.manager_userid
    return out


def _dept_detail(dept: Dept, d: Directory) -> dict[str, Any]:
    """§9.1.5 ``result`` (shape of the real capture, line 897)."""
    subtree, stack = set(), [dept.dept_id]
    while stack:
        current = stack.pop()
        subtree.add(current)
        stack.extend(c.dept_id for c in d.children(current))
    out: dict[str, Any] = {
        "auto_add_user": True,
        "brief": "",
        "create_dept_group": True,
        "dept_id": dept.dept_id,
        "dept_manager_userid_list": [],
        "dept_permits": [],
        "group_contain_sub_dept": False,
        "hide_dept": False,
        "name": dept.name,
        "order": dept.order,
        "outer_dept": False,
        "outer_permit_depts": [],
        "outer_permit_users": [],
        "user_permits": [],
        "member_count": sum(1 for u in d.users.values() if subtree & set(u.dept_ids)),
        "owning_member_count": len(d.members(dept.dept_id, "custom")),
    }
    if dept.parent_id is not None:  # the root's parent_id: UNCONFIRMED (line 902), omitted
        out["parent_id"] = dept.parent_id
    if dept.code:
        out["code"] = dept.code
    return out


Handler = Callable[[dict[str, Any], Directory], web.Response]


def _data_call(api: str, handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def serve(request: web.Request) -> web.Response:
        directory = request.app[STATE].contacts
        body, failure = await admitted(request, api, metered=directory.knobs.metered)
        if failure is not None:
            return failure
        try:
            return handler(body, directory)
        except _Bad as bad:
            return old_flat(bad.errcode, bad.errmsg)

    return serve


def _user_get(body: dict[str, Any], d: Directory) -> web.Response:
    userid = str(body.get("userid") or "")
    if not userid:
        raise _Bad(400002, "无效的参数")
    user = d.users.get(userid)
    if user is None:  # unknown, external or departed (离职) userid
        code = d.knobs.unknown_user_errcode
        return old_flat(code, _NO_USER[code])
    if not any(d.in_scope(i) for i in user.dept_ids):
        return old_flat(50002, "企业员工不在授权范围")
    return old_ok({"result": _user_detail(user, d)})


def _user_list(body: dict[str, Any], d: Directory) -> web.Response:
    dept_id = _int(body, "dept_id", required=True)
    cursor = _int(body, "cursor", required=True)
    size = _int(body, "size", required=True)
    order_field = str(body.get("order_field") or "custom")
    assert dept_id is not None and cursor is not None and size is not None  # noqa: S101
    if not (0 <= cursor <= MAX_CURSOR and 1 <= size <= MAX_SIZE) or order_field not in ORDER_FIELDS:
        raise _Bad(40035, "参数非法")
    if dept_id not in d.depts:
        return old_flat(60003, "部门不存在")
    if not d.in_scope(dept_id):
        return old_flat(50004, "部门不在权限范围内")
    members = d.members(dept_id, order_field)
    rows = []
    for user in members[cursor : cursor + size]:
        row = _user_fields(user, d)
        row["dept_order"] = d.dept_order(user, dept_id)
        row["leader"] = dept_id in user.leader_dept_ids
        rows.append(row)
    result: dict[str, Any] = {"has_more": cursor + size < len(members), "list": rows}
    if result["has_more"]:  # absent on the last page (line 881)
        result["next_cursor"] = cursor + size
    return old_ok({"result": result})


def _user_listid(body: dict[str, Any], d: Directory) -> web.Response:
    dept_id = _int(body, "dept_id", required=True)
    if dept_id not in d.depts:
        return old_flat(60003, "未找到部门")
    ids = [u.userid for u in d.members(dept_id or ROOT, "custom")]
    return old_ok({"result": {"userid_list": ids}})


def _listsub(body: dict[str, Any], d: Directory) -> web.Response:
    dept_id = _int(body, "dept_id", required=False) or ROOT  # optional per doc (line 889)
    if dept_id not in d.depts:
        return old_flat(60003, "未找到部门")
    rows = [
        {
            "dept_id": c.dept_id,
            "name": c.name,
            "parent_id": dept_id,
            "create_dept_group": True,
            "auto_add_user": True,
        }
        for c in d.children(dept_id)
    ]
    return old_ok({"result": rows})


def _listsubid(body: dict[str, Any], d: Directory) -> web.Response:
    dept_id = _int(body, "dept_id", required=True)
    if dept_id not in d.depts:
        return old_flat(60003, "未找到部门")
    ids = [c.dept_id for c in d.children(dept_id or ROOT)]
    return old_ok({"result": {"dept_id_list": ids}})


def _dept_get(body: dict[str, Any], d: Directory) -> web.Response:
    dept_id = _int(body, "dept_id", required=True)
    dept = d.depts.get(dept_id or 0)
    if dept is None:
        return old_flat(60003, "未找到对应部门")
    return old_ok({"result": _dept_detail(dept, d)})


# ---- control API ---------------------------------------------------------------------------


def _dept_view(dept: Dept) -> dict[str, Any]:
    return dict(dept.__dict__)


async def users(request: web.Request) -> web.Response:
    """GET: every user; POST ``{"userid", "name", "dept_ids", "job_number", "mobile", …}``."""
    d = request.app[STATE].contacts
    if request.method == "GET":
        return _json({"users": [u.view() for u in d.users.values()]})
    body = await _body(request)
    userid = str(body.pop("userid", "") or "")
    if userid in d.users:
        return _json({"error": f"userid {userid} exists"}, 409)
    try:
        user = d.add_user(userid, **body)
    except (TypeError, ValueError) as exc:
        return _json({"error": str(exc)}, 400)
    return _json(user.view(), 201)


async def one_user(request: web.Request) -> web.Response:
    """POST: change fields (``user_modify_org``); DELETE: the user leaves (``user_leave_org``)."""
    d, userid = request.app[STATE].contacts, request.match_info["userid"]
    if userid not in d.users:
        return _json({"error": f"no user {userid}"}, 404)
    if request.method == "DELETE":
        return _json(d.remove_user(userid).view())
    try:
        return _json(d.change_user(userid, **(await _body(request))).view())
    except (TypeError, ValueError) as exc:
        return _json({"error": str(exc)}, 400)


async def departments(request: web.Request) -> web.Response:
    """GET: every department; POST ``{"name", "parent_id", "dept_id"?, "code"?}``."""
    d = request.app[STATE].contacts
    if request.method == "GET":
        return _json({"departments": [_dept_view(x) for x in d.depts.values()]})
    body = await _body(request)
    try:
        dept_id = int(body["dept_id"]) if body.get("dept_id") is not None else None
        if dept_id in d.depts:
            return _json({"error": f"dept_id {dept_id} exists"}, 409)
        parent = int(body.get("parent_id", ROOT))
        dept = d.add_dept(str(body.get("name") or ""), parent, dept_id, str(body.get("code", "")))
    except (TypeError, ValueError) as exc:
        return _json({"error": str(exc)}, 400)
    return _json(_dept_view(dept), 201)


async def one_department(request: web.Request) -> web.Response:
    """POST: change (``org_dept_modify``); DELETE: remove an empty one (``org_dept_remove``)."""
    d = request.app[STATE].contacts
    try:
        dept_id = int(request.match_info["dept_id"])
    except ValueError:
        return _json({"error": "dept_id must be a number"}, 400)
    if dept_id not in d.depts:
        return _json({"error": f"no department {dept_id}"}, 404)
    try:
        if request.method == "DELETE":
            return _json(_dept_view(d.remove_dept(dept_id)))
        return _json(_dept_view(d.change_dept(dept_id, **(await _body(request)))))
    except ValueError as exc:
        return _json({"error": str(exc)}, 409 if request.method == "DELETE" else 400)


async def knobs(request: web.Request) -> web.Response:
    """GET: the contact knobs; POST: patch them (400 on an unknown knob or bad value)."""
    d = request.app[STATE].contacts
    if request.method == "POST":
        try:
            d.knobs = d.knobs.patched(await _body(request))
        except (TypeError, ValueError) as exc:
            return _json({"error": str(exc)}, 400)
    return _json(dict(d.knobs.__dict__))


def contact_routes() -> list[web.RouteDef]:
    """The contact data calls and ``/_sandbox/contacts/`` (before the old host's catch-all)."""
    return [
        web.post("/topapi/v2/user/get", _data_call("v2.user.get", _user_get)),
        web.post("/topapi/user/listid", _data_call("user.listid", _user_listid)),
        web.post("/topapi/v2/user/list", _data_call("v2.user.list", _user_list)),
        web.post("/topapi/v2/department/listsub", _data_call("v2.department.listsub", _listsub)),
        web.post(
            "/topapi/v2/department/listsubid", _data_call("v2.department.listsubid", _listsubid)
        ),
        web.post("/topapi/v2/department/get", _data_call("v2.department.get", _dept_get)),
        web.route("*", "/_sandbox/contacts/users", users),
        web.route("*", "/_sandbox/contacts/users/{userid}", one_user),
        web.route("*", "/_sandbox/contacts/departments", departments),
        web.route("*", "/_sandbox/contacts/departments/{dept_id}", one_department),
        web.route("*", "/_sandbox/contacts/knobs", knobs),
    ]
