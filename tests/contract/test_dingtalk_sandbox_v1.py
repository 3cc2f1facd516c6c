"""The DingTalk sandbox's v1.0 host over real HTTP: accessToken, instanceIds/query,
processInstances, and its 4xx/5xx error shapes (contract §1.2, §4, §7)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from dingdee_sandbox.demo_org import DEMO_APP, PROCESS_CODES
from dingdee_sandbox.dingtalk.state import DAY_MS, State
from tests.unit.sandbox_dingtalk.harness import Sandbox, running

pytestmark = pytest.mark.contract
PETTY = PROCESS_CODES["petty-cash"]
T0 = 1_790_000_000_000
IDS = "/v1.0/workflow/processes/instanceIds/query"
GET = "/v1.0/workflow/processInstances"
HEADER = "x-acs-dingtalk-access-token"
UUID = re.compile(r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}")


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    state = State(seed=6, manual_now_ms=T0)
    state.seed_demo(45)
    async with running(state) as sandbox:
        yield sandbox


async def v1_token(sb: Sandbox) -> str:
    creds = {"appKey": DEMO_APP.app_key, "appSecret": DEMO_APP.app_secret}
    status, body = await sb.call("POST", "/v1.0/oauth2/accessToken", json=creds)
    assert status == 200 and body["expireIn"] == 7200, body
    return str(body["accessToken"])


def error(status: int, body: Any, http: int, code: str) -> None:
    assert (status, body["code"]) == (http, code), body
    assert body["message"] and UUID.fullmatch(body["requestid"])


async def ids_page(sb: Sandbox, token: str, **query: Any) -> tuple[int, Any]:
    base = {
        "processCode": PETTY,
        "startTime": T0 - 31 * DAY_MS,
        "endTime": T0,
        "nextToken": 0,
        "maxResults": 20,
    }
    return await sb.call("POST", IDS, json={**base, **query}, headers={HEADER: token})


class TestToken:
    async def test_bad_credentials(self, sb: Sandbox) -> None:
        creds = {"appKey": DEMO_APP.app_key, "appSecret": "wrong"}
        status, body = await sb.call("POST", "/v1.0/oauth2/accessToken", json=creds)
        error(status, body, 400, "invalidClientIdOrSecret")
        assert body["message"] == "无效的clientId或者clientSecret"

    async def test_reuse_and_header_only(self, sb: Sandbox) -> None:
        token = await v1_token(sb)
        assert await v1_token(sb) == token
        pid = next(iter(sb.state.instances))
        query = {"processInstanceId": pid}
        status, body = await sb.call("GET", GET, params={**query, "access_token": token})
        error(status, body, 400, "AuthenticationFailed.MissingParameter")
        status, body = await sb.call("GET", GET, params=query, headers={HEADER: "f" * 32})
        error(status, body, 400, "InvalidAuthentication")
        await sb.control("POST", "faults", json={"v1_auth_status": 401})
        status, body = await sb.call("GET", GET, params=query, headers={HEADER: "f" * 32})
        error(status, body, 401, "InvalidAuthentication")
        await sb.control("POST", "clock", json={"advance_ms": 7_200_000})
        status, body = await sb.call("GET", GET, params=query, headers={HEADER: token})
        error(status, body, 401, "InvalidAuthentication")

    async def test_tokens_cross_hosts_unless_told_otherwise(self, sb: Sandbox) -> None:
        old = await sb.token()
        status, _ = await ids_page(sb, old)
        assert status == 200
        await sb.control("POST", "faults", json={"cross_host_tokens": False})
        status, body = await ids_page(sb, old)
        error(status, body, 400, "InvalidAuthentication")
        status, _ = await ids_page(sb, await v1_token(sb))
        assert status == 200


class TestInstanceIds:
    async def test_pages_to_the_end_with_string_next_tokens(self, sb: Sandbox) -> None:
        token, got, cursor = await v1_token(sb), [], 0
        while True:
            status, body = await ids_page(sb, token, nextToken=cursor)
            assert status == 200 and body["success"] is True
            got += body["result"]["list"]
            if "nextToken" not in body["result"]:
                break
            assert isinstance(body["result"]["nextToken"], str)
            cursor = int(body["result"]["nextToken"])
        assert got == sb.state.listed(PETTY, T0 - 31 * DAY_MS, T0) and len(got) == 45

    async def test_shape_options(self, sb: Sandbox) -> None:
        await sb.control(
            "POST", "faults", json={"v1_next_token_int": True, "v1_success_string": True}
        )
        _, body = await ids_page(sb, await v1_token(sb))
        assert body["result"]["nextToken"] == 20 and body["success"] == "true"

    async def test_statuses_filter(self, sb: Sandbox) -> None:
        _, body = await ids_page(sb, await v1_token(sb), statuses=["TERMINATED", "RUNNING"])
        ids = body["result"]["list"]
        assert ids and all(sb.state.instances[i].status != "COMPLETED" for i in ids)

    @pytest.mark.parametrize(
        ("change", "code"),
        [
            ({"maxResults": 21}, "invalidMaxResults"),
            ({"maxResults": None}, "invalidMaxResults"),
            ({"nextToken": None}, "invalidNextToken"),
            ({"processCode": None}, "invalidProcessCode"),
            ({"startTime": None}, "invalidInstanceListIdsStartTime"),
            ({"startTime": T0 - 130 * DAY_MS}, "invalidEndTime"),
            ({"startTime": T0 - 400 * DAY_MS, "endTime": T0 - 390 * DAY_MS}, "invalidEndTime"),
            ({"endTime": T0 - 32 * DAY_MS}, "invalidEndTime"),
            ({"userIds": [str(n) for n in range(11)]}, "invalidUserIds"),
        ],
    )
    async def test_documented_errors(self, sb: Sandbox, change: dict[str, Any], code: str) -> None:
        token = await v1_token(sb)
        status, body = await ids_page(sb, token)
        assert status == 200  # the base query is valid
        base = {
            "processCode": PETTY,
            "startTime": T0 - 31 * DAY_MS,
            "endTime": T0,
            "nextToken": 0,
            "maxResults": 20,
        }
        payload = {k: v for k, v in {**base, **change}.items() if v is not None}
        status, body = await sb.call("POST", IDS, json=payload, headers={HEADER: token})
        error(status, body, 400, code)


class TestProcessInstance:
    async def test_camel_case_shape(self, sb: Sandbox) -> None:
        pid = sb.state.expected()[0]["process_instance_id"]
        status, body = await sb.call(
            "GET", GET, params={"processInstanceId": pid}, headers={HEADER: await v1_token(sb)}
        )
        result = body["result"]
        assert status == 200 and body["success"] is True
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\dZ", result["createTime"])
        assert result["finishTime"] and result["bizAction"] == "NONE"
        assert result["businessId"] == sb.state.instances[pid].business_id
        assert isinstance(result["tasks"][0]["taskId"], int)
        assert result["tasks"][0]["pcUrl"] == result["tasks"][0]["mobileUrl"]
        form = result["formComponentValues"]
        assert all({"componentType", "id", "name", "value", "bizAlias"} <= set(c) for c in form)
        assert any("extValue" in c for c in form)

    async def test_unknown_and_missing_id(self, sb: Sandbox) -> None:
        headers = {HEADER: await v1_token(sb)}
        status, body = await sb.call("GET", GET, params={"processInstanceId": "x"}, headers=headers)
        error(status, body, 400, "processInstanceNotExist")
        status, body = await sb.call("GET", GET, headers=headers)
        error(status, body, 400, "invalidParameter")


class TestErrors:
    async def test_qps_busy_quota_permission_and_unknown_path(self, sb: Sandbox) -> None:
        token = await v1_token(sb)
        await sb.control("POST", "faults", json={"qps": 1})
        await ids_page(sb, token)
        error(*await ids_page(sb, token), 403, "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi")
        await sb.control("POST", "faults", json={"qps": 1000, "busy_rate": 1.0})
        error(*await ids_page(sb, token), 500, "systemError")
        await sb.control("POST", "faults", json={"busy_rate": 0.0, "global_qps_rate": 1.0})
        error(*await ids_page(sb, token), 403, "Forbidden.AccessDenied.QpsLimitForApi")
        await sb.control("POST", "faults", json={"global_qps_rate": 0.0, "monthly_quota": 0})
        error(*await ids_page(sb, token), 403, "Forbidden.AccessDenied.ApiCountLimitForOrg")
        await sb.control(
            "POST", "faults", json={"monthly_quota": None, "forbidden_apps": [DEMO_APP.app_key]}
        )
        error(*await ids_page(sb, token), 403, "Forbidden.AccessDenied.AccessTokenPermissionDenied")
        status, body = await sb.call("GET", "/v1.0/workflow/nothing", headers={HEADER: token})
        error(status, body, 404, "InvalidAction.NotFound")


SCHEMA = "/v1.0/workflow/forms/schemas/processCodes"


class TestFormSchema:
    """§9.5.1 and the simulator notes §9.6 item 5."""

    async def test_schema_per_process_code_agrees_with_the_instances(self, sb: Sandbox) -> None:
        token = await v1_token(sb)
        status, body = await sb.call(
            "GET", SCHEMA, params={"processCode": PETTY}, headers={HEADER: token}
        )
        assert status == 200 and "success" not in body, body
        result = body["result"]
        assert result["formCode"] == PETTY and result["status"] == "PUBLISHED"
        assert result["gmtModified"].isdigit()
        items = result["schemaContent"]["items"]
        table = next(i for i in items if i["componentName"] == "TableField")
        assert [c["props"]["label"] for c in table["children"]] == [
            "项目",
            "费用类型",
            "金额",
            "日期",
            "票据",  # an attachment cell in the rows (issue #18, contract §9.3)
        ]
        schema_ids = {(i["props"]["id"], i["props"]["label"]) for i in items}
        form = next(i for i in sb.state.instances.values() if i.process_code == PETTY).form
        assert schema_ids == {(c["id"], c["name"]) for c in form}

    async def test_unknown_code_missing_query_post_and_no_token(self, sb: Sandbox) -> None:
        token = await v1_token(sb)
        status, body = await sb.call(
            "GET", SCHEMA, params={"processCode": "PROC-NOPE"}, headers={HEADER: token}
        )
        error(status, body, 400, "formNotExist")
        status, body = await sb.call("GET", SCHEMA, headers={HEADER: token})
        error(status, body, 400, "invalidParameter")
        status, body = await sb.call("POST", SCHEMA, params={"processCode": PETTY})
        assert status == 404 and body["code"] == "InvalidAction.NotFound"
        status, body = await sb.call("GET", SCHEMA, params={"processCode": PETTY})
        error(status, body, 400, "AuthenticationFailed.MissingParameter")

    async def test_rename_knob_moves_gmt_modified_and_reset_restores(self, sb: Sandbox) -> None:
        token = await v1_token(sb)

        async def labels() -> tuple[str, list[str]]:
            _, body = await sb.call(
                "GET", SCHEMA, params={"processCode": PETTY}, headers={HEADER: token}
            )
            items = body["result"]["schemaContent"]["items"]
            return body["result"]["gmtModified"], [i["props"]["label"] for i in items]

        before, old = await labels()
        status, _ = await sb.call(
            "POST", f"/_sandbox/schemas/{PETTY}", json={"rename": {"补单事由": "报销事由"}}
        )
        assert status == 200
        after, new = await labels()
        assert new == ["报销事由" if x == "补单事由" else x for x in old] and new != old
        assert after == str(T0) != before
        status, _ = await sb.call(
            "POST", f"/_sandbox/schemas/{PETTY}", json={"rename": {"无": "x"}}
        )
        assert status == 400
        await sb.call("POST", f"/_sandbox/schemas/{PETTY}", json={"reset": True})
        assert await labels() == (before, old)
