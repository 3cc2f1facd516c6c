"""The DingTalk sandbox's old host over real HTTP: tokens, auth errors, listids, get (contract
§1–§3, §6, §7.1–§7.5)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from dingdee_sandbox.demo_org import DEMO_APP, PROCESS_CODES
from dingdee_sandbox.dingtalk.state import DAY_MS, Faults, State
from tests.unit.sandbox_dingtalk.harness import Sandbox, running

pytestmark = pytest.mark.contract
PETTY = PROCESS_CODES["petty-cash"]
T0 = 1_790_000_000_000
CREDS = {"appkey": DEMO_APP.app_key, "appsecret": DEMO_APP.app_secret}


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    state = State(seed=4, manual_now_ms=T0)
    state.seed_demo(45)
    async with running(state) as sandbox:
        yield sandbox


def assert_88(body: dict[str, object], sub_code: str) -> None:
    assert body["errcode"] == 88 and body["sub_code"] == sub_code
    assert f"subcode={sub_code}" in str(body["errmsg"]) and body["request_id"]


class TestToken:
    async def test_success_shape(self, sb: Sandbox) -> None:
        status, body = await sb.call("GET", "/gettoken", params=CREDS)
        assert status == 200 and body["errcode"] == 0 and body["errmsg"] == "ok"
        assert body["expires_in"] == 7200 and len(body["access_token"]) == 32
        assert 12 <= len(body["request_id"]) <= 13

    async def test_missing_and_wrong_credentials(self, sb: Sandbox) -> None:
        _, missing = await sb.call("GET", "/gettoken", params={"appkey": DEMO_APP.app_key})
        _, in_body = await sb.call("GET", "/gettoken", data=CREDS)
        _, wrong = await sb.call("GET", "/gettoken", params={**CREDS, "appsecret": "x"})
        assert missing["errcode"] == in_body["errcode"] == 40035
        assert missing["errmsg"] == "缺少参数 corpid or appkey"
        assert wrong["errcode"] == 40096 and "sub_code" not in wrong  # not wrapped in 88

    async def test_reuse_extends_then_expiry_issues_a_new_token(self, sb: Sandbox) -> None:
        first = await sb.token()
        await sb.control("POST", "clock", json={"advance_ms": 7_000_000})
        assert await sb.token() == first  # valid: same token, expiry extended
        await sb.control("POST", "clock", json={"advance_ms": 7_000_000})
        pid = next(iter(sb.state.instances))
        ok = await sb.old("get", {"process_instance_id": pid}, first)
        assert ok["errcode"] == 0  # 14 000 s after issue, 7 000 s after the extension
        await sb.control("POST", "clock", json={"advance_ms": 200_001})
        assert_88(await sb.old("get", {"process_instance_id": pid}, first), "40014")
        second = await sb.token()
        assert second != first
        assert (await sb.old("get", {"process_instance_id": pid}, second))["errcode"] == 0
        assert_88(await sb.old("get", {"process_instance_id": pid}, first), "40014")

    async def test_revoked_token_is_rejected_and_replaced(self, sb: Sandbox) -> None:
        token = await sb.token()
        assert (await sb.control("POST", "tokens/revoke"))["revoked"] == 1
        assert_88(
            await sb.old("listids", {"process_code": PETTY, "start_time": T0}, token), "40014"
        )
        assert await sb.token() != token


class TestAuthErrors:
    async def test_blank_and_invalid_token(self, sb: Sandbox) -> None:
        path = "/topapi/processinstance/get"
        status, blank = await sb.call("POST", path, json={"process_instance_id": "x"})
        assert status == 200
        assert_88(blank, "40000")
        assert blank["sub_msg"] == "access_token is blank"
        header_only = {"x-acs-dingtalk-access-token": await sb.token()}
        _, ignored = await sb.call("POST", path, json={}, headers=header_only)
        assert_88(ignored, "40000")  # the old host ignores the v1.0 header
        _, bad = await sb.call("POST", path, params={"access_token": "f" * 32}, json={})
        assert_88(bad, "40014")
        assert bad["sub_msg"] == "不合法的access_token"

    async def test_token_in_a_form_body_is_honoured(self, sb: Sandbox) -> None:
        pid = next(iter(sb.state.instances))
        form = {"access_token": await sb.token(), "process_instance_id": pid}
        _, body = await sb.call("POST", "/topapi/processinstance/get", data=form)
        assert body["errcode"] == 0

    async def test_legacy_flat_forms(self, sb: Sandbox) -> None:
        await sb.control("POST", "faults", json={"flat_auth_errors": True})
        token = await sb.token()
        path = "/topapi/processinstance/get"
        _, blank = await sb.call("POST", path, json={})
        _, bad = await sb.call("POST", path, params={"access_token": "nope"}, json={})
        await sb.control("POST", "clock", json={"advance_ms": 7_200_000})
        _, expired = await sb.call("POST", path, params={"access_token": token}, json={})
        assert [blank["errcode"], bad["errcode"], expired["errcode"]] == [41001, 40014, 42001]
        assert expired["errmsg"] == "access_token超时" and "sub_code" not in expired


class TestListids:
    async def test_pages_to_the_end_with_next_cursor_absent_on_the_last(self, sb: Sandbox) -> None:
        token = await sb.token()
        pages, cursor = [], 0
        while True:
            body = await sb.old(
                "listids",
                {
                    "process_code": PETTY,
                    "start_time": T0 - 31 * DAY_MS,
                    "end_time": T0,
                    "size": 20,
                    "cursor": cursor,
                },
                token,
            )
            assert body["errcode"] == 0 and body["request_id"]
            pages.append(body["result"]["list"])
            if "next_cursor" not in body["result"]:
                break
            cursor = body["result"]["next_cursor"]
            assert isinstance(cursor, int)
        assert [len(p) for p in pages] == [20, 20, 5]
        assert [i for p in pages for i in p] == sb.state.listed(PETTY, T0 - 31 * DAY_MS, T0)

    async def test_creation_time_filter_is_inclusive_and_ignores_finish_time(
        self, sb: Sandbox
    ) -> None:
        at = T0 - 3 * DAY_MS
        made = await sb.control(
            "POST", "instances", json={"process_code": PETTY, "create_time_ms": at}
        )
        await sb.control("POST", f"instances/{made['id']}/approve")  # finishes at T0
        token = await sb.token()
        exact = await sb.old(
            "listids", {"process_code": PETTY, "start_time": at, "end_time": at}, token
        )
        assert exact["result"] == {"list": [made["id"]]}
        before = await sb.old(
            "listids", {"process_code": PETTY, "start_time": at - 10, "end_time": at - 1}, token
        )
        after = await sb.old(
            "listids", {"process_code": PETTY, "start_time": at + 1, "end_time": at + 1}, token
        )
        assert made["id"] not in before["result"]["list"] + after["result"]["list"]

    async def test_default_end_is_now_and_order_is_stable(self, sb: Sandbox) -> None:
        token = await sb.token()
        query = {"process_code": PETTY, "start_time": T0 - 31 * DAY_MS, "cursor": 0}
        first = await sb.old("listids", query, token)
        again = await sb.old("listids", query, token)
        assert first["result"] == again["result"] and first["result"]["next_cursor"] == 20

    async def test_userid_list_filters_originators(self, sb: Sandbox) -> None:
        who = next(iter(sb.state.instances.values())).originator
        body = await sb.old(
            "listids",
            {"process_code": PETTY, "start_time": T0 - 31 * DAY_MS, "userid_list": who},
        )
        ids = body["result"]["list"]
        assert ids and all(sb.state.instances[i].originator == who for i in ids)

    @pytest.mark.parametrize(
        "change",
        [
            {"size": 21},
            {"end_time": T0 - 79 * DAY_MS},  # window of 121 days
            {"start_time": T0 - DAY_MS, "end_time": T0 - 2 * DAY_MS},  # end before start
            {"start_time": T0 - 366 * DAY_MS, "end_time": T0 - 300 * DAY_MS},  # too old
            {"start_time": T0 - 121 * DAY_MS, "end_time": None},  # only start, over 120 days
            {"userid_list": ",".join(str(n) for n in range(11))},
            {"process_code": None},
            {"start_time": None},
        ],
    )
    async def test_invalid_requests_answer_400002(
        self, sb: Sandbox, change: dict[str, object]
    ) -> None:
        query = {
            "process_code": PETTY,
            "start_time": T0 - 200 * DAY_MS,
            "end_time": T0 - 90 * DAY_MS,
        }
        query = {k: v for k, v in {**query, **change}.items() if v is not None}
        body = await sb.old("listids", query)
        assert body == {"errcode": 400002, "errmsg": "参数错误", "request_id": body["request_id"]}

    async def test_the_base_of_the_invalid_cases_is_valid(self, sb: Sandbox) -> None:
        query = {
            "process_code": PETTY,
            "start_time": T0 - 200 * DAY_MS,
            "end_time": T0 - 90 * DAY_MS,
        }
        body = await sb.old("listids", {**query, "size": 20, "userid_list": "1,2,3,4,5,6,7,8,9,10"})
        assert body["errcode"] == 0 and body["result"] == {"list": []}

    async def test_invalid_request_errcode_is_configurable(self, sb: Sandbox) -> None:
        await sb.control(
            "POST", "faults", json={"listids_errcode": 40, "listids_errmsg": "参数非法"}
        )
        body = await sb.old("listids", {"process_code": PETTY, "start_time": T0, "size": 50})
        assert (body["errcode"], body["errmsg"]) == (40, "参数非法")


class TestGet:
    async def test_completed_instance_shape(self, sb: Sandbox) -> None:
        pid = sb.state.expected()[0]["process_instance_id"]
        body = await sb.old("get", {"process_instance_id": pid})
        inst = body["process_instance"]
        assert body["errcode"] == 0 and body["errmsg"] == "ok" and body["request_id"]
        assert pid not in orjson.dumps({k: v for k, v in inst.items() if k != "tasks"}).decode()
        assert inst["status"] == "COMPLETED" and inst["result"] == "agree"
        assert inst["biz_action"] == "NONE" and inst["attached_process_instance_ids"] == []
        assert len(inst["create_time"]) == 19 and len(inst["finish_time"]) == 19
        assert inst["title"].endswith("提交的备用金补单")
        assert isinstance(inst["originator_dept_id"], str)
        values = {c["id"]: c for c in inst["form_component_values"]}
        assert all(isinstance(c["value"], str) for c in values.values())
        rows = orjson.loads(values["TableField_BYJ06"]["value"])
        assert rows[0]["rowValue"] and rows[0]["rowNumber"].startswith("TableField_BYJ06_")
        assert f"procInsId={pid}" in inst["tasks"][0]["url"]
        assert isinstance(inst["tasks"][0]["taskid"], str)

    async def test_running_then_terminated(self, sb: Sandbox) -> None:
        made = await sb.control("POST", "instances", json={"process_code": PETTY})
        token = await sb.token()
        running_ = (await sb.old("get", {"process_instance_id": made["id"]}, token))[
            "process_instance"
        ]
        assert running_["status"] == "RUNNING" and running_["result"] == ""
        assert "finish_time" not in running_
        await sb.control("POST", f"instances/{made['id']}/terminate")
        done = (await sb.old("get", {"process_instance_id": made["id"]}, token))["process_instance"]
        assert done["status"] == "TERMINATED" and done["result"] == "" and done["finish_time"]

    async def test_empty_table_quirk_and_given_form_values(self, sb: Sandbox) -> None:
        empty = await sb.control("POST", "instances", json={"process_code": PETTY, "table_rows": 0})
        given = [
            {"component_type": "TextField", "id": "TextField_X", "name": "事由", "value": "null"}
        ]
        custom = await sb.control(
            "POST", "instances", json={"process_code": PETTY, "form_component_values": given}
        )
        token = await sb.token()
        inst = (await sb.old("get", {"process_instance_id": empty["id"]}, token))[
            "process_instance"
        ]
        table = next(c for c in inst["form_component_values"] if c["id"] == "TableField_BYJ06")
        assert "ext_value" not in table
        assert all("rowValue" not in col for col in orjson.loads(table["value"]))
        inst = (await sb.old("get", {"process_instance_id": custom["id"]}, token))[
            "process_instance"
        ]
        assert inst["form_component_values"] == given

    async def test_unknown_instance(self, sb: Sandbox) -> None:
        assert_88(await sb.old("get", {"process_instance_id": "nope"}), "820005")
        await sb.control("POST", "faults", json={"unknown_instance": "flat"})
        body = await sb.old("get", {"process_instance_id": "nope"})
        assert body["errcode"] == 820005 and "sub_code" not in body

    async def test_unknown_old_path_is_errcode_22_not_404(self, sb: Sandbox) -> None:
        status, body = await sb.call("POST", "/topapi/processinstance/list", json={})
        assert status == 200 and body["errcode"] == 22
        assert body["sub_msg"].startswith("不合法ApiName") and body["request_id"]


async def test_other_faults_state_is_isolated() -> None:
    """Each in-process sandbox owns its state: knobs set on one do not leak into another."""
    async with running(State(faults=Faults(busy_rate=1.0))) as a, running(State()) as b:
        token_a, token_b = await a.token(), await b.token()
        assert (await a.old("get", {"process_instance_id": "x"}, token_a))["errcode"] == -1
        assert (await b.old("get", {"process_instance_id": "x"}, token_b))["sub_code"] == "820005"
