"""DingTalk sandbox contacts (dingtalk.md §9.1, §9.2, §9.6 item 1) over real HTTP on 127.0.0.1.

``topapi/v2/user/list`` paged by cursor to the end, ``v2/user/get``, ``user/listid``,
``v2/department/listsub``/``listsubid``/``get``: fields, limits and error codes as documented;
the gate (token, QPS) and the monthly-quota exemption; the control API and the Stream contact
events it emits; agreement with the approvals' originators and with ``config/flows.yaml``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml

from dingdee_sandbox.demo_org import DEMO_APP, DEPARTMENTS, EMPLOYEES, PROCESS_CODES, demo_mobile
from dingdee_sandbox.dingtalk.state import State
from tests.helpers import demo_flows_file
from tests.unit.sandbox_dingtalk.harness import Sandbox, running

pytestmark = pytest.mark.contract

ROOT_DIR = Path(__file__).resolve().parents[2]
FINANCE = 582976341
T0 = 1_790_000_000_000


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    state = State(seed=5, manual_now_ms=T0)
    state.seed_demo(15)
    async with running(state) as sandbox:
        yield sandbox


async def topapi(sb: Sandbox, path: str, payload: dict[str, Any], token: str | None = None) -> Any:
    status, body = await sb.call(
        "POST", f"/topapi/{path}", params={"access_token": token or await sb.token()}, json=payload
    )
    assert status == 200, body  # the old host answers HTTP 200, errors included (§9.1)
    return body


async def all_users(sb: Sandbox, dept_id: int, size: int) -> list[dict[str, Any]]:
    token = await sb.token()
    users: list[dict[str, Any]] = []
    cursor = 0
    while True:
        body = await topapi(
            sb, "v2/user/list", {"dept_id": dept_id, "cursor": cursor, "size": size}, token
        )
        assert body["errcode"] == 0, body
        result = body["result"]
        users.extend(result["list"])
        if not result["has_more"]:
            assert "next_cursor" not in result  # absent on the last page (line 881)
            return users
        cursor = result["next_cursor"]


async def every_user(sb: Sandbox, size: int = 2) -> list[dict[str, Any]]:
    """BFS over listsub from root 1 (§9.1.4), then user/list of every department."""
    token = await sb.token()
    queue, depts = [1], [1]
    while queue:
        body = await topapi(sb, "v2/department/listsub", {"dept_id": queue.pop()}, token)
        children = [d["dept_id"] for d in body["result"]]
        queue.extend(children)
        depts.extend(children)
    found: list[dict[str, Any]] = []
    for dept in depts:
        found.extend(await all_users(sb, dept, size))
    return found


class TestUserList:
    async def test_paging_to_the_end_returns_exactly_the_seeded_set(self, sb: Sandbox) -> None:
        users = await every_user(sb, size=1)
        assert len(users) == 12 and len({u["userid"] for u in users}) == 12
        by_id = {u["userid"]: u for u in users}
        for emp in EMPLOYEES:
            row = by_id[emp.userid]
            assert (row["name"], row["job_number"], row["mobile"]) == (
                emp.name,
                emp.staff_number,
                demo_mobile(emp),
            )
            assert row["dept_id_list"] == [int(emp.dept_id)] and row["state_code"] == "86"
            assert isinstance(row["dept_order"], int) and row["dept_order"] > 2**53  # line 836
            assert row["leader"] is False and row["active"] is True
            # subset of 9.1.1: no role_list, manager_userid, senior, leader_in_dept… (line 882)
            assert not {"role_list", "senior", "leader_in_dept", "dept_order_list"} & set(row)

    async def test_direct_members_and_page_shape(self, sb: Sandbox) -> None:
        body = await topapi(sb, "v2/user/list", {"dept_id": FINANCE, "cursor": 0, "size": 1})
        assert body["errcode"] == 0 and body["errmsg"] == "ok" and body["request_id"]
        assert body["result"]["has_more"] is True and body["result"]["next_cursor"] == 1
        root = await topapi(sb, "v2/user/list", {"dept_id": 1, "cursor": 0, "size": 100})
        assert root["result"] == {"has_more": False, "list": []}  # direct members only

    @pytest.mark.parametrize(
        ("payload", "errcode"),
        [
            ({"cursor": 0, "size": 10}, 400002),
            ({"dept_id": FINANCE, "size": 10}, 400002),
            ({"dept_id": FINANCE, "cursor": 0}, 400002),
            ({"dept_id": FINANCE, "cursor": 0, "size": 101}, 40035),
            ({"dept_id": FINANCE, "cursor": 0, "size": 0}, 40035),
            ({"dept_id": FINANCE, "cursor": -1, "size": 10}, 40035),
            ({"dept_id": FINANCE, "cursor": 100_001, "size": 10}, 40035),
            ({"dept_id": FINANCE, "cursor": 0, "size": 10, "order_field": "name"}, 40035),
            ({"dept_id": 999, "cursor": 0, "size": 10}, 60003),
        ],
    )
    async def test_limits_and_errors(
        self, sb: Sandbox, payload: dict[str, Any], errcode: int
    ) -> None:
        body = await topapi(sb, "v2/user/list", payload)
        assert body["errcode"] == errcode and "result" not in body

    async def test_size_100_and_cursor_100000_are_accepted(self, sb: Sandbox) -> None:
        body = await topapi(
            sb, "v2/user/list", {"dept_id": FINANCE, "cursor": 100_000, "size": 100}
        )
        assert body["errcode"] == 0 and body["result"] == {"has_more": False, "list": []}

    async def test_scope_and_field_permissions(self, sb: Sandbox) -> None:
        await sb.control("POST", "contacts/knobs", json={"scope_dept_ids": [582976342]})
        body = await topapi(sb, "v2/user/list", {"dept_id": FINANCE, "cursor": 0, "size": 10})
        assert body["errcode"] == 50004
        inside = await topapi(sb, "v2/user/list", {"dept_id": 582976342, "cursor": 0, "size": 10})
        assert inside["errcode"] == 0 and len(inside["result"]["list"]) == 2
        assert (await topapi(sb, "v2/user/get", {"userid": EMPLOYEES[0].userid}))[
            "errcode"
        ] == 50002
        await sb.control(
            "POST", "contacts/knobs", json={"scope_dept_ids": None, "mobile_permission": False}
        )
        row = (await topapi(sb, "v2/user/get", {"userid": EMPLOYEES[0].userid}))["result"]
        assert "mobile" not in row and "state_code" not in row  # omitted, not "" (line 807)
        status, _ = await sb.call("POST", "/_sandbox/contacts/knobs", json={"nope": 1})
        assert status == 400


class TestUserGet:
    async def test_fields_and_types(self, sb: Sandbox) -> None:
        emp = EMPLOYEES[0]
        body = await topapi(sb, "v2/user/get", {"userid": emp.userid, "language": "zh_CN"})
        r = body["result"]
        assert (r["userid"], r["name"], r["job_number"], r["mobile"]) == (
            emp.userid,
            emp.name,
            emp.staff_number,
            demo_mobile(emp),
        )
        assert r["dept_id_list"] == [FINANCE] and r["dept_order_list"][0]["dept_id"] == FINANCE
        assert r["leader_in_dept"] == [{"dept_id": FINANCE, "leader": False}]
        for key in ("active", "admin", "boss", "senior", "real_authed", "exclusive_account"):
            assert isinstance(r[key], bool)
        assert r["role_list"] == [] and isinstance(r["unionid"], str) and r["unionid"]
        for absent in ("title", "hired_date", "manager_userid", "email"):  # empty → omitted
            assert absent not in r

    async def test_unknown_and_missing_userid(self, sb: Sandbox) -> None:
        body = await topapi(sb, "v2/user/get", {"userid": "nobody"})
        assert (body["errcode"], body["errmsg"]) == (60121, "找不到该用户")
        await sb.control("POST", "contacts/knobs", json={"unknown_user_errcode": 33012})
        assert (await topapi(sb, "v2/user/get", {"userid": "nobody"}))["errcode"] == 33012
        assert (await topapi(sb, "v2/user/get", {}))["errcode"] == 400002

    async def test_token_and_qps_gate_and_quota_exemption(self, sb: Sandbox) -> None:
        body = await topapi(sb, "v2/user/get", {"userid": EMPLOYEES[0].userid}, token="bogus")
        assert body["errcode"] == 88 and body["sub_code"] == "40014"
        await sb.control("POST", "faults", json={"qps": 2, "monthly_quota": 1})
        token = await sb.token()
        codes = [
            (await topapi(sb, "v2/user/get", {"userid": EMPLOYEES[0].userid}, token)).get(
                "sub_code"
            )
            for _ in range(3)
        ]
        assert codes == [None, None, "90018"]  # the per-(app, API) QPS limit applies (line 793)
        stats = await sb.control("GET", "stats")
        assert stats["metered_calls"] == 0  # exempt from the monthly quota (lines 791–793)
        await asyncio.sleep(1.05)
        await sb.control("POST", "contacts/knobs", json={"metered": True})
        assert (await topapi(sb, "v2/user/get", {"userid": EMPLOYEES[0].userid}, token))[
            "errcode"
        ] == 0
        assert (await topapi(sb, "v2/user/get", {"userid": EMPLOYEES[0].userid}, token))[
            "errcode"
        ] == 90020
        log = await sb.control("GET", "requests")
        assert "v2.user.get" in {r["api"] for r in log["requests"]}


class TestDepartments:
    async def test_listsub_listsubid_and_get(self, sb: Sandbox) -> None:
        subs = (await topapi(sb, "v2/department/listsub", {}))["result"]  # dept_id optional
        expected = [int(d.dingtalk_id) for d in DEPARTMENTS if d.parent_dingtalk_id == "1"]
        assert [d["dept_id"] for d in subs] == expected
        assert set(subs[0]) == {
            "dept_id",
            "name",
            "parent_id",
            "create_dept_group",
            "auto_add_user",
        }
        assert all(d["parent_id"] == 1 for d in subs)
        ids = await topapi(sb, "v2/department/listsubid", {"dept_id": 1})
        assert ids["result"] == {"dept_id_list": expected}
        leaf = await topapi(sb, "v2/department/listsub", {"dept_id": FINANCE})
        assert leaf["result"] == []
        got = (await topapi(sb, "v2/department/get", {"dept_id": FINANCE}))["result"]
        assert (got["dept_id"], got["name"], got["parent_id"]) == (FINANCE, "财务部", 1)
        assert got["member_count"] == got["owning_member_count"] == 2
        root = (await topapi(sb, "v2/department/get", {"dept_id": 1}))["result"]
        assert root["member_count"] == 12 and root["owning_member_count"] == 0
        listid = await topapi(sb, "user/listid", {"dept_id": FINANCE})
        assert listid["result"]["userid_list"] == [
            e.userid for e in EMPLOYEES if e.dept_id == str(FINANCE)
        ]

    async def test_errors(self, sb: Sandbox) -> None:
        for path in (
            "v2/department/listsub",
            "v2/department/listsubid",
            "v2/department/get",
            "user/listid",
        ):
            assert (await topapi(sb, path, {"dept_id": 4242}))["errcode"] == 60003, path
        for path in ("v2/department/listsubid", "v2/department/get", "user/listid"):
            assert (await topapi(sb, path, {}))["errcode"] == 400002, path


async def _stream(sb: Sandbox) -> aiohttp.ClientWebSocketResponse:
    status, opened = await sb.call(
        "POST",
        "/v1.0/gateway/connections/open",
        json={
            "clientId": DEMO_APP.app_key,
            "clientSecret": DEMO_APP.app_secret,
            "subscriptions": [],
        },
    )
    assert status == 200, opened
    return await sb.http.ws_connect(f"{opened['endpoint']}?ticket={opened['ticket']}")


async def _contact_events(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[tuple[str, Any]]:
    """The next ``count`` contact EVENT frames (acked), as (eventType, parsed data)."""
    out: list[tuple[str, Any]] = []
    while len(out) < count:
        frame = orjson.loads((await ws.receive(timeout=5)).data)
        headers = frame["headers"]
        await ws.send_str(
            orjson.dumps(
                {
                    "code": 200,
                    "headers": {"messageId": headers["messageId"]},
                    "message": "OK",
                    "data": "",
                }
            ).decode()
        )
        if headers["eventType"] == "bpms_instance_change":
            continue
        assert isinstance(frame["data"], str)  # JSON text, not an object (§9.2)
        assert isinstance(headers["eventBornTime"], str) and headers["eventId"]
        out.append((headers["eventType"], orjson.loads(frame["data"])))
    return out


class TestControlApiAndEvents:
    async def test_new_hire_change_and_leave(self, sb: Sandbox) -> None:
        ws = await _stream(sb)
        hire = {
            "userid": "0123456789019999",
            "name": "钱新",
            "dept_ids": [FINANCE],
            "job_number": "EMP0013",
            "mobile": "13800000013",
        }
        assert (await sb.call("POST", "/_sandbox/contacts/users", json=hire))[0] == 201
        assert (await sb.call("POST", "/_sandbox/contacts/users", json=hire))[0] == 409
        got = (await topapi(sb, "v2/user/get", {"userid": hire["userid"]}))["result"]
        assert (got["name"], got["job_number"]) == ("钱新", "EMP0013")
        assert hire["userid"] in {u["userid"] for u in await all_users(sb, FINANCE, 100)}
        # the new hire can originate an approval (the later "claim loads by itself" test)
        made = await sb.control(
            "POST",
            "instances",
            json={"process_code": PROCESS_CODES["petty-cash"], "originator_userid": hire["userid"]},
        )
        assert sb.state.instances[made["id"]].originator == hire["userid"]
        changed = await sb.control(
            "POST", f"contacts/users/{hire['userid']}", json={"job_number": "EMP0014"}
        )
        assert changed["job_number"] == "EMP0014"
        status, _ = await sb.call("DELETE", f"/_sandbox/contacts/users/{hire['userid']}")
        assert status == 200
        assert (await topapi(sb, "v2/user/get", {"userid": hire["userid"]}))["errcode"] == 60121
        events = await _contact_events(ws, 3)
        assert [e[0] for e in events] == ["user_add_org", "user_modify_org", "user_leave_org"]
        added, modified, left = (e[1] for e in events)
        assert added["userId"] == [hire["userid"]] and isinstance(added["timeStamp"], str)
        assert modified["diffInfo"] == {
            "prev": {"jobNumber": "EMP0013"},
            "curr": {"jobNumber": "EMP0014"},
            "userid": hire["userid"],
        }
        assert left["userId"] == [hire["userid"]] and set(left) == {"timeStamp", "userId"}
        await ws.close()

    async def test_department_create_change_remove(self, sb: Sandbox) -> None:
        ws = await _stream(sb)
        status, dept = await sb.call(
            "POST", "/_sandbox/contacts/departments", json={"name": "法务部", "parent_id": 1}
        )
        assert status == 201 and isinstance(dept["dept_id"], int)
        subs = (await topapi(sb, "v2/department/listsub", {"dept_id": 1}))["result"]
        assert {"dept_id": dept["dept_id"], "name": "法务部"}.items() <= next(
            d for d in subs if d["dept_id"] == dept["dept_id"]
        ).items()
        await sb.control(
            "POST", f"contacts/departments/{dept['dept_id']}", json={"name": "法务合规部"}
        )
        got = (await topapi(sb, "v2/department/get", {"dept_id": dept["dept_id"]}))["result"]
        assert got["name"] == "法务合规部"
        assert (await sb.call("DELETE", f"/_sandbox/contacts/departments/{FINANCE}"))[
            0
        ] == 409  # has members
        assert (await sb.call("DELETE", f"/_sandbox/contacts/departments/{dept['dept_id']}"))[
            0
        ] == 200
        assert (await topapi(sb, "v2/department/get", {"dept_id": dept["dept_id"]}))[
            "errcode"
        ] == 60003
        events = await _contact_events(ws, 3)
        assert events == [
            ("org_dept_create", {"deptId": [dept["dept_id"]]}),
            ("org_dept_modify", {"deptId": [dept["dept_id"]]}),
            ("org_dept_remove", {"deptId": [dept["dept_id"]]}),
        ]
        await ws.close()

    async def test_bad_control_input(self, sb: Sandbox) -> None:
        bad_users = [
            {"userid": "x"},
            {"userid": "x", "name": "n", "dept_ids": [4242]},
            {"userid": "x", "name": "n", "shoe": 1},
        ]
        for body in bad_users:
            assert (await sb.call("POST", "/_sandbox/contacts/users", json=body))[0] == 400, body
        assert (await sb.call("DELETE", "/_sandbox/contacts/users/nobody"))[0] == 404
        assert (
            await sb.call(
                "POST", "/_sandbox/contacts/departments", json={"name": "x", "parent_id": 4242}
            )
        )[0] == 400


class TestAgreement:
    async def test_originators_are_directory_users(self, sb: Sandbox) -> None:
        users = {u["userid"]: u for u in await every_user(sb, size=100)}
        for inst in sb.state.instances.values():
            assert inst.originator in users
            assert int(inst.dept_id) in users[inst.originator]["dept_id_list"]

    async def test_job_numbers_and_departments_match_flows_yaml(self, sb: Sandbox) -> None:
        tables = yaml.safe_load((demo_flows_file()).read_text(encoding="utf-8"))["reference_tables"]
        users = await every_user(sb, size=100)
        assert tables["staff"] == {u["userid"]: u["job_number"] for u in users}
        token = await sb.token()
        depts = {}
        for dept_id in tables["departments"]:
            body = await topapi(sb, "v2/department/get", {"dept_id": int(dept_id)}, token)
            depts[dept_id] = body["result"]["name"]
        assert {depts[k]: v for k, v in tables["departments"].items()} == tables["department_names"]
