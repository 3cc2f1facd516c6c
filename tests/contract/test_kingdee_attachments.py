"""The Kingdee sandbox's bill attachments over real HTTP (kingdee.md §10.4, §10.5 item 4):
chunked ``AttachmentUpload`` assembled byte-exact, its errors, ``AttachmentDownLoad`` parts,
``BOS_Attachment`` queries, the control listing, and the official SDK's upload wrapper."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from k3cloud_webapi_sdk.main import K3CloudApiSdk

from dingdee_common.kingdee_signing import signature_headers
from dingdee_common.web import start_site
from dingdee_sandbox.kingdee import SandboxConfig, SandboxState, create_app
from dingdee_sandbox.kingdee.demo import expense_model

pytestmark = pytest.mark.contract

STUB = "Kingdee.BOS.WebApi.ServicesStub.DynamicFormService"
FORM = "ER_ExpReimbursement"
ACCT, USER = "5db25ac8d2b819", "webapi"
APP_ID = "204399_72epSbtEQMC92Vwt2d3LRa9LRqSc1tqJ"
APP_SECRET = "fb7d46647ac346dbb5fcd45b65512a45"
MIB = 1 << 20


def signed(url: str) -> dict[str, str]:
    """Signature headers of the integration user (kingdee.md §1.1) for ``url``."""
    return signature_headers(
        httpx.URL(url).path,
        acct_id=ACCT,
        username=USER,
        app_id=APP_ID,
        app_secret=APP_SECRET,
        lcid=2052,
        org_num="0",
        timestamp=str(int(time.time())),
    )


class Kd:
    def __init__(self, root: str, state: SandboxState, http: httpx.AsyncClient) -> None:
        self.root, self.state, self.http = root, state, http

    async def call(self, method: str, data: Any) -> Any:
        url = f"{self.root}/k3cloud/{STUB}.{method}.common.kdsvc"
        response = await self.http.post(url, json={"data": data}, headers=signed(url), timeout=30)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
async def kd() -> AsyncIterator[Kd]:
    state = SandboxState(SandboxConfig())
    runner, port = await start_site(create_app(state))
    async with httpx.AsyncClient() as http:
        yield Kd(f"http://127.0.0.1:{port}", state, http)
    await runner.cleanup()


async def save_bill(kd: Kd, number: str) -> int:
    url = f"{kd.root}/k3cloud/{STUB}.Save.common.kdsvc"
    body = {"formid": FORM, "data": {"Model": expense_model(number, random.Random(number))}}
    response = await kd.http.post(url, json=body, headers=signed(url))
    status = response.json()["Result"]["ResponseStatus"]
    assert status["IsSuccess"], status
    return int(status["SuccessEntitys"][0]["Id"])


def payload(fid: int, number: str, chunk: bytes, *, last: bool, **extra: Any) -> dict[str, Any]:
    return {
        "FileName": "发票.pdf",
        "FormId": FORM,
        "IsLast": last,
        "InterId": str(fid),
        "BillNO": number,
        "AliasFileName": "",
        "SendByte": base64.b64encode(chunk).decode(),
        **extra,
    }


def status_of(answer: Any) -> dict[str, Any]:
    status: dict[str, Any] = answer["Result"]["ResponseStatus"]
    return status


async def upload_chunked(kd: Kd, fid: int, number: str, data: bytes, size: int) -> Any:
    pieces = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
    file_id = None
    answer: Any = None
    for n, piece in enumerate(pieces):
        extra: dict[str, Any] = {"FileId": file_id} if file_id else {}
        answer = await kd.call(
            "AttachmentUpLoad", payload(fid, number, piece, last=n == len(pieces) - 1, **extra)
        )
        assert status_of(answer)["IsSuccess"], answer
        file_id = file_id or answer["Result"]["FileId"]
        assert answer["Result"]["FileId"] == file_id
    return answer


class TestUpload:
    async def test_chunked_upload_assembles_byte_exact(self, kd: Kd) -> None:
        fid = await save_bill(kd, "BYJATT1")
        data = random.Random(5).randbytes(9 * MIB + 12345)
        answer = await upload_chunked(kd, fid, "BYJATT1", data, 4 * MIB)
        result = answer["Result"]
        assert len(result["FileId"]) == 32 and int(result["FileId"], 16) >= 0
        assert result["FileId"] == result["FileId"].lower()
        (entity,) = status_of(answer)["SuccessEntitys"]
        listing = (
            await kd.http.get(
                f"{kd.root}/_sandbox/attachments", params={"form_id": FORM, "inter_id": fid}
            )
        ).json()["attachments"]
        assert [
            (a["file_name"], a["size"], a["sha256"], a["id"], a["chunks"]) for a in listing
        ] == [("发票.pdf", len(data), hashlib.sha256(data).hexdigest(), entity["Id"], 3)]
        # AttachmentDownLoad: 4 MiB parts, the next StartIndex, bytes concatenate exactly
        got, start, last = b"", 0, False
        while not last:
            part = (
                await kd.call(
                    "AttachmentDownLoad", {"FileId": result["FileId"], "StartIndex": start}
                )
            )["Result"]
            got += base64.b64decode(part["FilePart"])
            start, last = part["StartIndex"], part["IsLast"]
            assert part["FileSize"] == len(data) and part["FileName"] == "发票.pdf"
        assert got == data and start == 12 * MIB
        # uploading does not change the bill's status (§10.4.1)
        bill = kd.state.store.find(FORM, "BYJATT1")
        assert bill is not None and bill.status == "A"

    async def test_single_call_and_empty_file(self, kd: Kd) -> None:
        fid = await save_bill(kd, "BYJATT2")
        answer = await kd.call("AttachmentUpload", payload(fid, "BYJATT2", b"hello", last=True))
        assert status_of(answer)["IsSuccess"] and status_of(answer)["SuccessEntitys"][0]["Id"] > 0
        empty = await kd.call("attachmentupload", payload(fid, "BYJATT2", b"", last=True))
        assert status_of(empty)["IsSuccess"], empty
        rows = [a for a in kd.state.attachments.completed() if a.inter_id == fid]
        assert [a.size for a in rows] == [5, 0]

    async def test_errors(self, kd: Kd) -> None:
        fid = await save_bill(kd, "BYJATT3")
        first = await kd.call("AttachmentUpload", payload(fid, "BYJATT3", b"a" * 10, last=False))
        file_id = first["Result"]["FileId"]
        cases = [
            (payload(fid + 999, "BYJATT3", b"x", last=True), 10),  # unknown bill
            (payload(fid, "NOPE", b"x", last=True), 10),  # number does not match the FID
            (payload(fid, "BYJATT3", b"x", last=True, FormId="XX_Nope"), 9),
            (payload(fid, "BYJATT3", b"x", last=True, FileId="f" * 32), 10),  # bad FileId
            (payload(fid, "BYJATT3", b"x", last=True) | {"SendByte": "@@not base64"}, 8),
            (
                {
                    k: v
                    for k, v in payload(fid, "BYJATT3", b"x", last=True).items()
                    if k != "IsLast"
                },
                8,
            ),
            (payload(fid, "BYJATT3", b"x" * (4 * MIB + 1), last=True), 8),  # must be chunked
            (payload(fid, "BYJATT3", b"x", last=False, FileId=file_id, FileName="b.pdf"), 8),
        ]
        for body, code in cases:
            answer = await kd.call("AttachmentUpload", body)
            status = status_of(answer)
            assert (status["IsSuccess"], status["MsgCode"]) == (False, code), (body, answer)
            assert status["Errors"][0]["Message"]
        # the upload in progress survives the refused chunks, then completes
        done = await kd.call(
            "AttachmentUpload", payload(fid, "BYJATT3", b"b" * 5, last=True, FileId=file_id)
        )
        assert status_of(done)["IsSuccess"]
        # out of order: a chunk after the last one is refused and changes nothing
        late = await kd.call(
            "AttachmentUpload", payload(fid, "BYJATT3", b"c", last=False, FileId=file_id)
        )
        assert (status_of(late)["IsSuccess"], status_of(late)["MsgCode"]) == (False, 8)
        (row,) = [a for a in kd.state.attachments.completed() if a.inter_id == fid]
        assert (
            row.size == 15
            and row.sha.hexdigest() == hashlib.sha256(b"a" * 10 + b"b" * 5).hexdigest()
        )

    async def test_chunk_limit_is_a_knob(self, kd: Kd) -> None:
        fid = await save_bill(kd, "BYJATT4")
        kd.state.update_config({"attachment_max_chunk_bytes": 8})
        answer = await kd.call("AttachmentUpload", payload(fid, "BYJATT4", b"x" * 9, last=True))
        assert status_of(answer)["MsgCode"] == 8


class TestQuery:
    async def test_bos_attachment_query(self, kd: Kd) -> None:
        fid = await save_bill(kd, "BYJATT5")
        other = await save_bill(kd, "BYJATT6")
        await upload_chunked(kd, fid, "BYJATT5", b"z" * 3000, 1024)
        await upload_chunked(kd, other, "BYJATT6", b"y", 1024)
        query = {
            "FormId": "BOS_Attachment",
            "FieldKeys": "FID,FInterID,FATTACHMENTNAME,FBillNo,FBillType,FAttachmentSize,FFileId",
            "FilterString": f"FBillType='{FORM}' and FInterID='{fid}'",
            "Limit": 100,
        }
        rows = await kd.call("ExecuteBillQuery", query)
        assert len(rows) == 1
        row = rows[0]
        assert row[1:6] == [str(fid), "发票.pdf", "BYJATT5", FORM, 2.93]  # KB, 2 decimals
        assert len(row[6]) == 32
        bad = await kd.call("ExecuteBillQuery", {**query, "FieldKeys": "FNope"})
        assert bad[0][0]["Result"]["ResponseStatus"]["MsgCode"] == 9


def sdk(url: str) -> K3CloudApiSdk:
    client = K3CloudApiSdk(url)
    client.InitConfig(ACCT, USER, APP_ID, APP_SECRET, url)
    return client


async def test_official_sdk_upload(kd: Kd) -> None:
    """``K3CloudApiSdk.AttachmentUpload`` (the SDK's own wrapper) against the sandbox."""
    fid = await save_bill(kd, "BYJATT7")
    client = sdk(f"{kd.root}/k3cloud")
    data = random.Random(9).randbytes(5000)
    first = json.loads(
        await asyncio.to_thread(
            client.AttachmentUpload, payload(fid, "BYJATT7", data[:3000], last=False)
        )
    )
    assert status_of(first)["IsSuccess"], first
    last = json.loads(
        await asyncio.to_thread(
            client.AttachmentUpload,
            payload(fid, "BYJATT7", data[3000:], last=True, FileId=first["Result"]["FileId"]),
        )
    )
    assert status_of(last)["IsSuccess"], last
    (row,) = [a for a in kd.state.attachments.completed() if a.inter_id == fid]
    assert row.sha.hexdigest() == hashlib.sha256(data).hexdigest()


async def test_commit_then_drop_upload(kd: Kd) -> None:
    """The non-idempotent path (§10.4.1, §10.5 item 4): the chunk is committed, the answer lost;
    the client then finds the attachment with a ``BOS_Attachment`` query."""
    fid = await save_bill(kd, "BYJATT8")
    kd.state.update_config({"fault_services": ["attachmentupload"]})
    await kd.http.post(f"{kd.root}/_sandbox/faults", json={"queue": ["commit_then_drop"]})
    with pytest.raises(httpx.TransportError):
        await kd.call("AttachmentUpload", payload(fid, "BYJATT8", b"once", last=True))
    rows = await kd.call(
        "ExecuteBillQuery",
        {
            "FormId": "BOS_Attachment",
            "FieldKeys": "FAttachmentName,FAttachmentSize",
            "FilterString": f"FInterID='{fid}'",
        },
    )
    assert rows == [["发票.pdf", 0.0]]
