"""The official Kingdee Python SDK (``kingdee-cdp-webapi-sdk``) as a client of the sandbox.

Its signed requests must be accepted (signature v2 recomputed exactly), a wrong app secret or a
tampered app id must be rejected with the MsgCode 1 envelope, and its session cookie reused.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from k3cloud_webapi_sdk.main import K3CloudApiSdk

from dingdee_common.web import start_site
from dingdee_sandbox.kingdee import SandboxConfig, SandboxState, create_app
from dingdee_sandbox.kingdee.demo import expense_model

pytestmark = pytest.mark.contract

ACCT, USER = "5db25ac8d2b819", "webapi"
APP_ID = "204399_72epSbtEQMC92Vwt2d3LRa9LRqSc1tqJ"
APP_SECRET = "fb7d46647ac346dbb5fcd45b65512a45"


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, SandboxState]]:
    state = SandboxState(SandboxConfig())
    runner, port = await start_site(create_app(state))
    yield f"http://127.0.0.1:{port}/k3cloud", state
    await runner.cleanup()


def sdk(url: str, secret: str = APP_SECRET, app_id: str = APP_ID) -> K3CloudApiSdk:
    client = K3CloudApiSdk(url)
    client.InitConfig(ACCT, USER, app_id, secret, url)
    return client


async def call(fn: Any, *args: Any) -> Any:
    """Run a blocking SDK call in a thread (the sandbox serves on this test's event loop)."""
    return json.loads(await asyncio.to_thread(fn, *args))


async def test_signed_batchsave_and_query_are_accepted(server: tuple[str, SandboxState]) -> None:
    """SDK-signed BatchSave saves both packages; ExecuteBillQuery then finds them."""
    url, state = server
    client = sdk(url)
    rng = random.Random(1)
    models = [expense_model("BYJSDK1", rng), expense_model("BYJSDK2", rng)]
    answer = await call(client.BatchSave, "ER_ExpReimbursement", {"Model": models})
    status = answer["Result"]["ResponseStatus"]
    assert status["IsSuccess"] is True and "ErrorCode" not in status
    assert [e["Number"] for e in status["SuccessEntitys"]] == ["BYJSDK1", "BYJSDK2"]
    rows = await call(
        client.ExecuteBillQuery,
        {
            "FormId": "ER_ExpReimbursement",
            "FieldKeys": "FBillNo,FDocumentStatus",
            "FilterString": "FBillNo in ('BYJSDK1','BYJSDK2','NOPE')",
            "OrderString": "FBillNo ASC",
        },
    )
    assert rows == [["BYJSDK1", "A"], ["BYJSDK2", "A"]]
    assert state.stats["sessions_created"] == 1, "the SDK must reuse the session cookie it got"


@pytest.mark.parametrize(
    ("secret", "app_id"),
    [("0" * 32, APP_ID), (APP_SECRET, "204399_72epSbtEQMC92Vwt2d3LRa9LRqSd1tqJ")],
    ids=["wrong-app-secret", "tampered-app-id"],
)
async def test_wrong_credentials_are_rejected(
    server: tuple[str, SandboxState], secret: str, app_id: str
) -> None:
    """A wrong secret fails signature B (or A): MsgCode 1 envelope, nothing saved."""
    url, state = server
    answer = await call(
        sdk(url, secret, app_id).BatchSave,
        "ER_ExpReimbursement",
        {"Model": [expense_model("BYJBAD1", random.Random(2))]},
    )
    status = answer["Result"]["ResponseStatus"]
    assert status["IsSuccess"] is False and status["MsgCode"] == 1
    assert "签名" in status["Errors"][0]["Message"]
    assert state.store.find("ER_ExpReimbursement", "BYJBAD1") is None
    assert state.stats["signature_rejected"] == 1


async def test_async_batchsave_via_query_mode(server: tuple[str, SandboxState]) -> None:
    """BatchSaveQuery (beginmethod/querymethod): Status 1 + TaskId, then the answer on a poll."""
    url, state = server
    models = [expense_model("BYJASYNC1", random.Random(3))]
    answer = await call(sdk(url).BatchSaveQuery, "ER_ExpReimbursement", {"Model": models})
    assert answer["Result"]["ResponseStatus"]["SuccessEntitys"][0]["Number"] == "BYJASYNC1"
    assert state.stats["calls_queryasyncresult"] == 1
    assert state.async_results == {}


def _status(answer: dict[str, Any]) -> dict[str, Any]:
    status: dict[str, Any] = answer["Result"]["ResponseStatus"]
    return status


async def test_submit_audit_unaudit_delete_walk_the_status_machine(
    server: tuple[str, SandboxState],
) -> None:
    """Contract §5.2–§5.4: A →Submit→ B →Audit→ C →UnAudit→ D →Delete; refusals are per row."""
    url, state = server
    client = sdk(url)
    form = "ER_ExpReimbursement"
    rng = random.Random(4)
    models = [expense_model("BYJOP1", rng), expense_model("BYJOP2", rng)]
    await call(client.BatchSave, form, {"Model": models})
    record_id = state.store.find(form, "BYJOP2").id  # type: ignore[union-attr]

    early = _status(await call(client.Audit, form, {"Numbers": ["BYJOP1"]}))
    assert early["IsSuccess"] is False and early["MsgCode"] == 11
    assert "BYJOP1" in early["Errors"][0]["Message"]

    submitted = _status(
        await call(client.Submit, form, {"Numbers": ["BYJOP1", "NOPE", "BYJOP2"], "Ids": ""})
    )
    assert submitted["IsSuccess"] is True
    assert [(e["Number"], e["DIndex"]) for e in submitted["SuccessEntitys"]] == [
        ("BYJOP1", 0),
        ("BYJOP2", 2),
    ]
    audited = _status(await call(client.Audit, form, {"Ids": str(record_id)}))
    assert audited["SuccessEntitys"] == [{"Id": record_id, "Number": "BYJOP2", "DIndex": 0}]
    assert audited["SuccessMessages"][0]["Message"].endswith("审核成功！")
    again = _status(await call(client.Audit, form, {"Numbers": ["BYJOP1", "BYJOP2"]}))
    assert again["IsSuccess"] is False and again["MsgCode"] == 11
    assert [e["Number"] for e in again["SuccessEntitys"]] == ["BYJOP1"]
    assert again["Errors"][0]["Message"] == "单据编号为“BYJOP2”的费用报销单，单据已经审核！"

    refused = _status(await call(client.Delete, form, {"Numbers": ["BYJOP2"]}))
    assert refused["IsSuccess"] is False and state.store.find(form, "BYJOP2") is not None
    unaudited = _status(await call(client.UnAudit, form, {"Numbers": ["BYJOP2"]}))
    assert unaudited["IsSuccess"] is True
    assert state.store.find(form, "BYJOP2").status == "D"  # type: ignore[union-attr]
    deleted = _status(await call(client.Delete, form, {"Numbers": ["BYJOP2"]}))
    assert deleted["IsSuccess"] is True and state.store.find(form, "BYJOP2") is None
    gone = _status(await call(client.Delete, form, {"Numbers": ["BYJOP2"]}))
    assert gone["IsSuccess"] is False and gone["MsgCode"] == 10


async def test_view_expands_references_with_internal_ids(
    server: tuple[str, SandboxState],
) -> None:
    """Contract §5.1: references carry the base-data item's internal id, plus ``Xxx_Id``."""
    url, state = server
    client = sdk(url)
    model = expense_model("BYJVIEW1", random.Random(5))
    await call(client.BatchSave, "ER_ExpReimbursement", {"Model": [model]})
    answer = await call(client.View, "ER_ExpReimbursement", {"Number": "BYJVIEW1"})
    body = answer["Result"]["Result"]
    staff = state.store.base.find("staff", model["FProposerID"]["FSTAFFNUMBER"])
    assert staff is not None and staff.id > 0
    assert body["ProposerID_Id"] == staff.id
    assert body["ProposerID"]["Id"] == staff.id
    assert body["ProposerID"]["Name"] == [{"Key": 2052, "Value": staff.name}]
    assert body["OrgID"]["Id"] == 1  # the organisation's id (contract §5.1 example)
    row = body["ER_ExpenseReimbEntry"][0]
    expense = state.store.base.find("expense_items", row["ExpID"]["Number"])
    assert expense is not None and row["ExpID_Id"] == expense.id != 0
