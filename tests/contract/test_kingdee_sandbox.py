"""The Kingdee sandbox against the contract (kingdee.md §0–§5, §8), over real HTTP on 127.0.0.1.

Raw httpx requests in every envelope; session logins and expiry; per-package validation with
Kingdee's error shapes; partial success by DIndex; the query subset; View; per-session
serialisation; the fault knobs.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiohttp import web

from dingdee_common.kingdee_signing import signature_headers
from dingdee_common.web import start_site
from dingdee_sandbox.kingdee import SandboxConfig, SandboxState, create_app
from dingdee_sandbox.kingdee.demo import department_model, expense_model, invalid_expense_model

pytestmark = pytest.mark.contract

STUB = "Kingdee.BOS.WebApi.ServicesStub"
FORM = "ER_ExpReimbursement"
SESSION_LOST = {
    "Result": {
        "ResponseStatus": {
            "ErrorCode": 500,
            "IsSuccess": False,
            "Errors": [{"FieldName": None, "Message": "会话信息已丢失，请重新登录", "DIndex": 0}],
            "SuccessEntitys": [],
            "SuccessMessages": [],
            "MsgCode": 1,
        }
    }
}


@dataclass
class Kd:
    """A running sandbox and a raw client for it."""

    root: str
    state: SandboxState
    http: httpx.AsyncClient

    def url(self, service: str) -> str:
        return f"{self.root}/k3cloud/{service}.common.kdsvc"

    async def post(
        self,
        service: str,
        body: Any,
        *,
        signed: bool = True,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> httpx.Response:
        all_headers = dict(headers or {})
        if signed:
            path = httpx.URL(self.url(service)).path
            all_headers.update(
                signature_headers(
                    path,
                    acct_id="5db25ac8d2b819",
                    username="webapi",
                    app_id="204399_72epSbtEQMC92Vwt2d3LRa9LRqSc1tqJ",
                    app_secret="fb7d46647ac346dbb5fcd45b65512a45",
                    lcid=2052,
                    org_num="0",
                    timestamp=str(int(time.time())),
                )
            )
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return await self.http.post(
            self.url(service), content=content, headers=all_headers, timeout=timeout
        )

    async def call(self, service: str, body: Any, **kwargs: Any) -> Any:
        response = await self.post(service, body, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()


async def start_kd(config: SandboxConfig) -> tuple[Kd, web.AppRunner]:
    state = SandboxState(config)
    runner, port = await start_site(create_app(state))
    return Kd(f"http://127.0.0.1:{port}", state, httpx.AsyncClient(timeout=10)), runner


@pytest.fixture
async def kd() -> AsyncIterator[Kd]:
    box, runner = await start_kd(SandboxConfig(seed=1))
    yield box
    await box.http.aclose()
    await runner.cleanup()


def status(answer: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = answer["Result"]["ResponseStatus"]
    return result


BATCH = f"{STUB}.DynamicFormService.BatchSave"
QUERY = f"{STUB}.DynamicFormService.ExecuteBillQuery"


class TestRoutingAndEnvelopes:
    async def test_three_envelopes_and_any_casing_are_equivalent(self, kd: Kd) -> None:
        rng = random.Random(1)
        named = {"FormId": FORM, "Data": {"Model": [expense_model("E1", rng)]}}
        positional = {"parameters": [FORM, json.dumps({"Model": [expense_model("E2", rng)]})]}
        legacy = {
            "format": 1,
            "useragent": "ApiClient",
            "rid": "1",
            "v": "1.0",
            "parameters": json.dumps([FORM, json.dumps({"Model": [expense_model("E3", rng)]})]),
        }
        for body, service in ((named, BATCH), (positional, BATCH.lower()), (legacy, BATCH.upper())):
            assert status(await kd.call(service, body))["IsSuccess"] is True
        assert [r.number for r in kd.state.store.bills(FORM)] == ["E1", "E2", "E3"]

    async def test_unknown_service_is_404_and_bad_json_a_response_error(self, kd: Kd) -> None:
        assert (await kd.post(f"{STUB}.DynamicFormService.Nope", {})).status_code == 404
        response = await kd.post(BATCH, b"{not json")
        assert response.text.startswith("response_error:")
        assert json.loads(response.text[len("response_error:") :])["Message"]


class TestSessions:
    async def test_validate_user_session_header_and_cookie(self, kd: Kd) -> None:
        login = await kd.call(
            f"{STUB}.AuthService.ValidateUser",
            {
                "acctID": "5db25ac8d2b819",
                "username": "webapi",
                "password": "demo-password",
                "lcid": 2052,
            },
            signed=False,
        )
        assert login["LoginResultType"] == 1 and login["IsSuccessByAPI"] is True
        sid = login["KDSVCSessionId"]
        body = {"data": {"FormId": FORM, "FieldKeys": "FBillNo", "FilterString": ""}}
        assert await kd.call(QUERY, body, signed=False, headers={"kdservice-sessionid": sid}) == []
        assert await kd.call(QUERY, body, signed=False, headers={"SID": sid}) == []
        kd.http.cookies.clear()
        assert await kd.call(QUERY, body, signed=False) == [[SESSION_LOST]]

    @pytest.mark.parametrize(
        ("service", "params", "result_type", "text"),
        [
            ("ValidateUser", ["5db25ac8d2b819", "webapi", "wrong", 2052], 0, "用户名或密码错误"),
            ("ValidateUser", ["nope", "webapi", "demo-password", 2052], -1, "数据中心"),
            (
                "LoginByAppSecret",
                ["5db25ac8d2b819", "webapi", "204399_72epSbtEQMC92Vwt2d3LRa9LRqSc1tqJ", "x", 2052],
                0,
                "用户名或密码错误",
            ),
        ],
    )
    async def test_login_failures(
        self, kd: Kd, service: str, params: list[Any], result_type: int, text: str
    ) -> None:
        answer = await kd.call(
            f"{STUB}.AuthService.{service}", {"parameters": params}, signed=False
        )
        assert answer["LoginResultType"] == result_type and text in answer["Message"]
        assert answer["KDSVCSessionId"] is None and answer["IsSuccessByAPI"] is False

    async def test_login_by_app_secret_and_by_sign(self, kd: Kd) -> None:
        from dingdee_common.kingdee_signing import login_sign

        app_id, secret = (
            "204399_72epSbtEQMC92Vwt2d3LRa9LRqSc1tqJ",
            "fb7d46647ac346dbb5fcd45b65512a45",
        )
        by_secret = await kd.call(
            f"{STUB}.AuthService.LoginByAppSecret",
            {
                "acctid": "5db25ac8d2b819",
                "username": "webapi",
                "appid": app_id,
                "appsecret": secret,
            },
            signed=False,
        )
        ts = str(int(time.time()))
        sign = login_sign("5db25ac8d2b819", "webapi", app_id, secret, ts)
        by_sign = await kd.call(
            f"{STUB}.AuthService.LoginBySign",
            {"parameters": ["5db25ac8d2b819", "webapi", app_id, ts, sign, 2052]},
            signed=False,
        )
        assert by_secret["LoginResultType"] == 1 and by_sign["LoginResultType"] == 1

    async def test_idle_expiry_and_revocation_answer_msgcode_1(self, kd: Kd) -> None:
        kd.state.update_config({"session_ttl_seconds": 0.2})
        body = {"formid": FORM, "data": {"Model": [expense_model("S1", random.Random(2))]}}
        assert status(await kd.call(BATCH, body))["IsSuccess"] is True  # cookie set
        await asyncio.sleep(0.3)
        assert await kd.call(BATCH, body) == SESSION_LOST
        kd.http.cookies.clear()  # signature mode: drop the SID and resend → new session
        assert status(await kd.call(BATCH, body))["MsgCode"] == 11  # S1 exists already
        kd.state.revoke_sessions()
        assert await kd.call(QUERY, {"data": {"FormId": FORM, "FieldKeys": "FID"}}) == [
            [SESSION_LOST]
        ]


class TestBatchSave:
    async def test_partial_success_by_dindex_with_kingdee_error_shapes(self, kd: Kd) -> None:
        rng = random.Random(3)
        await kd.call(BATCH, {"formid": FORM, "data": {"Model": [expense_model("P0", rng)]}})
        models = [
            expense_model("P1", rng),
            expense_model("P0", rng),  # stored already
            invalid_expense_model("P2", rng, "missing_causa"),
            expense_model("P1", rng),  # earlier in this batch
            invalid_expense_model("P3", rng, "unknown_expense_item"),
            expense_model("P4", rng),
        ]
        answer = await kd.call(
            BATCH,
            {
                "formid": FORM,
                "data": {
                    "Model": models,
                    "IsVerifyBaseDataField": "true",
                    "NeedReturnFields": ["FBillNo"],
                },
            },
        )
        st = status(answer)
        assert st["IsSuccess"] is False and st["ErrorCode"] == 500 and st["MsgCode"] == 11
        assert [(e["Number"], e["DIndex"]) for e in st["SuccessEntitys"]] == [("P1", 0), ("P4", 5)]
        errors = {(e["DIndex"], e["FieldName"]): e["Message"] for e in st["Errors"]}
        assert (
            errors[(1, "FBillNo")] == "违反字段唯一性要求：编码唯一。[P0]在当前系统中已经被使用。"
        )
        assert (
            errors[(3, "FBillNo")] == "违反字段唯一性要求：编码唯一。[P1]在当前系统中已经被使用。"
        )
        assert errors[(2, "FCausa")] == "字段“事由”是必填项"
        assert errors[(4, "FExpID")].startswith("单据体实体【费用明细】第【1】行分录，")
        assert answer["Result"]["NeedReturnData"] == [{"FBillNo": "P1"}, {"FBillNo": "P4"}]
        assert {r.number for r in kd.state.store.bills(FORM)} == {"P0", "P1", "P4"}

    async def test_unverified_reference_trips_the_required_check(self, kd: Kd) -> None:
        model = invalid_expense_model("R1", random.Random(4), "unknown_staff")
        st = status(await kd.call(BATCH, {"formid": FORM, "data": {"Model": [model]}}))
        assert st["Errors"] == [
            {"FieldName": "FProposerID", "Message": "字段“申请人”是必填项", "DIndex": 0}
        ]

    async def test_all_or_nothing_mode_saves_none(self, kd: Kd) -> None:
        kd.state.update_config({"all_or_nothing": True})
        rng = random.Random(5)
        models = [expense_model("A1", rng), invalid_expense_model("A2", rng, "missing_causa")]
        st = status(await kd.call(BATCH, {"formid": FORM, "data": {"Model": models}}))
        assert st["SuccessEntitys"] == [] and [e["DIndex"] for e in st["Errors"]] == [1]
        assert kd.state.store.bills(FORM) == []

    async def test_department_becomes_referenceable_base_data(self, kd: Kd) -> None:
        first = department_model("BM001001", "华南分公司")
        child = department_model("BM001002", "华南销售部", parent="BM001001")
        body = {
            "formid": "BD_Department",
            "data": {
                "Model": [first, child],
                "IsVerifyBaseDataField": True,
                "IsAutoSubmitAndAudit": True,
            },
        }
        assert status(await kd.call(BATCH, body))["IsSuccess"] is True
        record = kd.state.store.find("BD_Department", "BM001002")
        assert record is not None and record.status == "C"
        again = status(await kd.call(BATCH, body))
        assert {e["FieldName"] for e in again["Errors"]} == {"FNumber"}

    async def test_a_deleted_department_is_no_longer_referenceable(self, kd: Kd) -> None:
        body = {"formid": "BD_Department", "data": {"Model": [department_model("BM001003", "X")]}}
        assert status(await kd.call(BATCH, body))["IsSuccess"] is True
        assert kd.state.store.base.find("departments", "BM001003") is not None
        delete = {"formid": "BD_Department", "data": {"Numbers": ["BM001003"]}}
        assert status(await kd.call(f"{STUB}.DynamicFormService.Delete", delete))["IsSuccess"]
        assert kd.state.store.base.find("departments", "BM001003") is None
        assert kd.state.store.find("BD_Department", "BM001003") is None


class TestUpdate:
    async def test_update_by_primary_key_and_refusal_when_audited(self, kd: Kd) -> None:
        saved = status(await kd.call(BATCH, {"formid": FORM, "data": {"Model": models_for("U1")}}))
        record_id = saved["SuccessEntitys"][0]["Id"]
        patch = {"FID": record_id, "FCausa": "改过的事由", "FDate": "2026-12-01"}
        body = {"formid": FORM, "data": {"Model": [patch], "NeedUpDateFields": ["FCausa"]}}
        st = status(await kd.call(BATCH, body))
        assert st["SuccessEntitys"] == [{"Id": record_id, "Number": "U1", "DIndex": 0}]
        record = kd.state.store.find(FORM, "U1")
        assert record is not None
        assert record.model["FCausa"] == "改过的事由" and record.model["FDate"] == "2026-11-03"
        missing = status(await kd.call(BATCH, {"formid": FORM, "data": {"Model": [{"FID": 9}]}}))
        assert missing["Errors"][0]["FieldName"] == "FID"
        dept = kd.state.store.find("BD_Department", "BM000002")
        assert dept is not None
        audited = {
            "formid": "BD_Department",
            "data": {"Model": [{"FDEPTID": dept.id, "FName": "x"}]},
        }
        st = status(await kd.call(BATCH, audited))
        assert "单据已审核" in st["Errors"][0]["Message"] and dept.model["FName"] == "财务部"


def models_for(*keys: str) -> list[dict[str, Any]]:
    rng = random.Random(11)
    return [expense_model(k, rng) for k in keys]


class TestQueryAndView:
    async def test_filter_subset_paging_and_errors(self, kd: Kd) -> None:
        rng = random.Random(6)
        models = [expense_model(f"Q{i}", rng) for i in range(5)]
        await kd.call(BATCH, {"formid": FORM, "data": {"Model": models}})
        q = {"FormId": FORM, "FieldKeys": "FBillNo,FDocumentStatus", "OrderString": "FBillNo ASC"}
        rows = await kd.call(
            QUERY,
            {
                "data": {
                    **q,
                    "FilterString": "FBillNo in ('Q1','Q3','X')"
                    " or (FBillNo = 'Q4' and FDocumentStatus = 'A')",
                }
            },
        )
        assert rows == [["Q1", "A"], ["Q3", "A"], ["Q4", "A"]]
        paged = await kd.call(QUERY, {"data": {**q, "FilterString": "", "StartRow": 1, "Limit": 2}})
        assert paged == [["Q1", "A"], ["Q2", "A"]]
        array = [
            {
                "Left": "(",
                "FieldName": "FBillNo",
                "Compare": "67",
                "Value": "Q2",
                "Right": ")",
                "Logic": "0",
            }
        ]
        assert await kd.call(QUERY, {"data": {**q, "FilterString": array}}) == [["Q2", "A"]]
        objects = await kd.call(
            f"{STUB}.DynamicFormService.BillQuery",
            {
                "data": {
                    **q,
                    "FieldKeys": "FBillNo,FProposerID.FNumber",
                    "FilterString": "FBillNo='Q0'",
                }
            },
        )
        assert objects[0]["FBillNo"] == "Q0" and objects[0]["FProposerID.FNumber"].startswith("EMP")
        bad = await kd.call(QUERY, {"data": {**q, "FieldKeys": "FNope"}})
        assert (
            bad[0][0]["Result"]["ResponseStatus"]["Errors"][0]["Message"]
            == "元数据中标识为FNope的字段不存在"
        )

    async def test_entry_fields_answer_by_their_own_key(self, kd: Kd) -> None:
        """kingdee.md §10.3: entry fields are checked like header fields, the entry id only as
        ``FEntity_FEntryID``; the entity key itself is not queryable."""
        await kd.call(BATCH, {"formid": FORM, "data": {"Model": models_for("E1")}})
        q = {"FormId": FORM, "FilterString": "FBillNo='E1'", "Limit": 1}
        [row] = await kd.call(
            QUERY, {"data": {**q, "FieldKeys": "FBillNo,FRemark,FEntity_FEntryID"}}
        )
        assert row[0] == "E1" and len(row) == 3
        for key in ("FEntity", "FEntryID", "FRemarkX"):
            bad = await kd.call(QUERY, {"data": {**q, "FieldKeys": f"FBillNo,{key}"}})
            message = bad[0][0]["Result"]["ResponseStatus"]["Errors"][0]["Message"]
            assert message == f"元数据中标识为{key}的字段不存在"
        unknown = await kd.call(QUERY, {"data": {**q, "FormId": "BD_STAFF", "FieldKeys": "FID"}})
        assert unknown[0][0]["Result"]["ResponseStatus"]["Errors"][0]["Message"] == "业务对象不存在"

    async def test_query_business_info_read_with_the_defensive_walker(self, kd: Kd) -> None:
        """§10.3: the outer shape is documented, the inside is not; walk it for string ``Key``s."""
        service = f"{STUB}.DynamicFormService.QueryBusinessInfo"
        answer = await kd.call(service, {"data": {"FormId": FORM}})
        assert answer["Result"]["ResponseStatus"] == ""

        def keys(node: Any) -> set[str]:
            found: set[str] = set()
            if isinstance(node, dict):
                if isinstance(node.get("Key"), str):
                    found.add(node["Key"])
                node = list(node.values())
            if isinstance(node, list):
                for child in node:
                    found |= keys(child)
            return found

        assert {"FCausa", "FEntity", "FExpID"} <= keys(answer["Result"]["NeedReturnData"])
        assert "FCausaX" not in keys(answer)
        unknown = await kd.call(service, {"parameters": [json.dumps({"FormId": "BD_STAFF"})]})
        assert status(unknown)["Errors"][0]["Message"] == "业务对象不存在"

    async def test_view_by_number_uses_f_less_names(self, kd: Kd) -> None:
        await kd.call(
            BATCH, {"formid": FORM, "data": {"Model": [expense_model("V1", random.Random(7))]}}
        )
        view = await kd.call(
            f"{STUB}.DynamicFormService.View", {"formid": FORM, "data": {"Number": "V1"}}
        )
        body = view["Result"]["Result"]
        assert view["Result"]["ResponseStatus"] is None
        assert body["BillNo"] == "V1" and body["DocumentStatus"] == "A" and body["Id"] > 100000
        assert isinstance(body["ER_ExpenseReimbEntry"], list)


class TestConcurrencyAndFaults:
    async def test_one_session_is_serialised_two_sessions_run_in_parallel(self, kd: Kd) -> None:
        kd.state.update_config({"latency_call_seconds": 0.3})
        body = {"data": {"FormId": FORM, "FieldKeys": "FID"}}
        await kd.call(QUERY, body)  # the cookie jar now holds one session
        started = time.monotonic()
        await asyncio.gather(kd.call(QUERY, body), kd.call(QUERY, body))
        serial = time.monotonic() - started
        async with httpx.AsyncClient() as other:
            second = Kd(kd.root, kd.state, other)
            await second.call(QUERY, body)
            started = time.monotonic()
            await asyncio.gather(kd.call(QUERY, body), second.call(QUERY, body))
            parallel = time.monotonic() - started
        assert serial >= 0.6 and parallel < 0.5, (serial, parallel)

    async def test_fault_knobs(self, kd: Kd) -> None:
        kd.state.update_config({"slow_seconds": 1.0})
        kd.state.fault_queue.extend(["http_503", "response_error", "commit_then_drop", "slow"])
        body = {"formid": FORM, "data": {"Model": [expense_model("F1", random.Random(8))]}}
        assert (await kd.post(BATCH, body)).status_code == 503
        assert (await kd.post(BATCH, body)).text.startswith("response_error:{")
        assert kd.state.store.bills(FORM) == []
        with pytest.raises(httpx.RemoteProtocolError):
            await kd.post(BATCH, body)
        assert [r.number for r in kd.state.store.bills(FORM)] == ["F1"], "committed, then dropped"
        slow = {"formid": FORM, "data": {"Model": [expense_model("F2", random.Random(9))]}}
        with pytest.raises(httpx.ReadTimeout):
            await kd.post(BATCH, slow, timeout=0.3)
        await asyncio.sleep(1.0)
        assert kd.state.store.find(FORM, "F2") is not None, "saved after the client gave up"
        stats = kd.state.stats
        assert stats["fault_http_5xx"] == stats["fault_response_error"] == 1
        assert stats["fault_commit_then_drop"] == stats["fault_slow"] == 1

    async def test_response_error_message_knob_busy_server(self, kd: Kd) -> None:
        """Every call a ``response_error:`` "服务繁忙" (contract §0.4): nothing saved meanwhile."""
        kd.state.update_config({"response_error_rate": 1.0, "response_error_message": "服务繁忙"})
        body = {"formid": FORM, "data": {"Model": [expense_model("B1", random.Random(8))]}}
        for url, payload in (
            (BATCH, body),
            (QUERY, {"data": {"FormId": FORM, "FieldKeys": "FID"}}),
        ):
            text = (await kd.post(url, payload)).text
            assert text.startswith("response_error:{")
            error = json.loads(text[len("response_error:") :])
            assert error["Message"] == error["InnerExWrapper"]["Message"] == "服务繁忙"
        assert kd.state.store.bills(FORM) == []


async def test_overload_adds_latency_and_refuses_some_calls(kd: Kd) -> None:
    """Past the queue depth: HTTP 500 or the MsgCode 14 (调用限制) envelope, nothing saved twice."""
    kd.state.update_config(
        {
            "latency_call_seconds": 0.2,
            "overload_queue_depth": 1,
            "overload_extra_seconds": 0.05,
            "overload_error_rate": 1.0,
        }
    )
    body = {"data": {"FormId": FORM, "FieldKeys": "FID"}}
    await kd.call(QUERY, body)  # one session for all
    responses = await asyncio.gather(*(kd.post(QUERY, body) for _ in range(6)))
    refused = [
        r for r in responses if r.status_code == 500 or (r.status_code == 200 and r.json() != [])
    ]
    assert refused, [r.status_code for r in responses]
    for r in refused:
        if r.status_code == 200:
            assert r.json()["Result"]["ResponseStatus"]["MsgCode"] == 14
    assert kd.state.stats["overloaded"] >= len(refused)


class TestOptionalChecks:
    async def test_timestamp_skew_and_nonce_replay(self, kd: Kd) -> None:
        kd.state.update_config({"signature_max_skew_seconds": 60})
        body = {"data": {"FormId": FORM, "FieldKeys": "FID"}}
        assert await kd.call(QUERY, body) == []
        stale = signature_headers(
            httpx.URL(kd.url(QUERY)).path,
            acct_id="5db25ac8d2b819",
            username="webapi",
            app_id="204399_72epSbtEQMC92Vwt2d3LRa9LRqSc1tqJ",
            app_secret="fb7d46647ac346dbb5fcd45b65512a45",
            lcid=2052,
            org_num="0",
            timestamp=str(int(time.time() * 1000) - 3_600_000),  # milliseconds, an hour old
        )
        kd.http.cookies.clear()
        answer = await kd.call(QUERY, body, signed=False, headers=stale)
        assert "时间戳" in answer[0][0]["Result"]["ResponseStatus"]["Errors"][0]["Message"]
        kd.state.update_config({"signature_max_skew_seconds": 0, "reject_replayed_nonce": True})
        first = await kd.post(QUERY, body)
        assert first.json() == []
        kd.http.cookies.clear()
        replay = await kd.http.post(
            kd.url(QUERY), content=json.dumps(body).encode(), headers=dict(first.request.headers)
        )
        assert "nonce" in replay.json()[0][0]["Result"]["ResponseStatus"]["Errors"][0]["Message"]

    async def test_lockout_after_failed_logins(self, kd: Kd) -> None:
        kd.state.update_config({"login_lockout_after": 2})
        service = f"{STUB}.AuthService.ValidateUser"
        wrong = {"parameters": ["5db25ac8d2b819", "webapi", "nope", 2052]}
        right = {"parameters": ["5db25ac8d2b819", "webapi", "demo-password", 2052]}
        for _ in range(2):
            assert (await kd.call(service, wrong, signed=False))["LoginResultType"] == 0
        locked = await kd.call(service, right, signed=False)
        assert locked["LoginResultType"] == -1 and "锁定" in locked["Message"]


class TestRealAnswerShapes:
    """The knobs for answers real Kingdee gives (issue 15), as a client on the wire sees them."""

    async def test_iis_pages_empty_bodies_and_msgcodes_on_the_wire(self, kd: Kd) -> None:
        kd.state.fault_queue.extend(["html_200", "http_503", "empty_200", "msgcode_13"])
        body = {"formid": FORM, "data": {"Model": [expense_model("I1", random.Random(4))]}}
        page = await kd.post(BATCH, body)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        unavailable = await kd.post(BATCH, body)
        assert unavailable.status_code == 503 and "<title>" in unavailable.text
        empty = await kd.post(BATCH, body)
        assert empty.status_code == 200 and empty.content == b""
        assert [r.number for r in kd.state.store.bills(FORM)] == ["I1"], "committed, then empty"
        locked = await kd.call(QUERY, {"data": {"FormId": FORM, "FieldKeys": "FID"}})
        assert locked[0][0]["Result"]["ResponseStatus"]["MsgCode"] == 13  # wrapped [[..]]

    async def test_locked_user_and_row_msgcode(self, kd: Kd) -> None:
        kd.state.update_config({"locked_users": ["webapi"], "row_msgcode_numbers": {"I3": 12}})
        login = {"acctID": "5db25ac8d2b819", "username": "webapi", "password": "demo-password"}
        refused = await kd.call(f"{STUB}.AuthService.ValidateUser", login, signed=False)
        assert refused["LoginResultType"] == -1 and "锁定" in refused["Message"]
        rng = random.Random(5)
        models = [expense_model("I2", rng), expense_model("I3", rng)]
        answer = status(await kd.call(BATCH, {"formid": FORM, "data": {"Model": models}}))
        assert answer["MsgCode"] == 12 and answer["SuccessEntitys"] == []
        assert [(e["DIndex"], e["FieldName"]) for e in answer["Errors"]] == [(1, "FBillNo")]
