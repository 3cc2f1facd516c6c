"""The DingTalk sandbox's approval files and comments over real HTTP (dingtalk.md §3.4, §9.3,
§9.4, §9.6 items 3–4): demo ``DDAttachment`` values, ``urls/download``, the expiring byte URL,
and ``processInstances/comments`` as seen through the control API."""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from dingdee_sandbox.demo_org import DEMO_APP, EMPLOYEES
from dingdee_sandbox.dingtalk.files import BLOCK, DemoFile, file_bytes, files_of_form
from dingdee_sandbox.dingtalk.generator import Instance
from dingdee_sandbox.dingtalk.state import State
from tests.unit.sandbox_dingtalk.harness import Sandbox, running

pytestmark = pytest.mark.contract
T0 = 1_790_000_000_000
URLS = "/v1.0/workflow/processInstances/spaces/files/urls/download"
COMMENTS = "/v1.0/workflow/processInstances/comments"
HEADER = "x-acs-dingtalk-access-token"


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    state = State(seed=6, manual_now_ms=T0)
    state.seed_demo(45)
    async with running(state) as sandbox:
        yield sandbox


async def token(sb: Sandbox) -> dict[str, str]:
    creds = {"appKey": DEMO_APP.app_key, "appSecret": DEMO_APP.app_secret}
    _, body = await sb.call("POST", "/v1.0/oauth2/accessToken", json=creds)
    return {HEADER: str(body["accessToken"])}


def with_files(state: State) -> list[tuple[Instance, list[DemoFile]]]:
    return [(i, fs) for i in state.instances.values() if (fs := files_of_form(i.form))]


MAGIC = {"pdf": b"%PDF-1.7\n", "jpg": b"\xff\xd8\xff\xe0", "png": b"\x89PNG\r\n\x1a\n"}


def expected_sha(state: State, file: DemoFile) -> str:
    """The documented derivation, written out independently of the sandbox's code: 64 KiB
    blocks ``random.Random(f"{seed}:{fileId}:{block}").randbytes(65536)``, the first block
    starting with the type's magic bytes (the full header is checked by prefix only)."""
    digest = hashlib.sha256()
    blocks = -(-file.file_size // BLOCK)
    for k in range(blocks):
        block = random.Random(f"{state.seed}:{file.file_id}:{k}").randbytes(BLOCK)
        if k == 0:
            header = next(iter(file_bytes(state.seed, file)))[:32]
            assert header.startswith(MAGIC[file.file_type])
            block = header + block[len(header) :]
        digest.update(block[: file.file_size - k * BLOCK])
    return digest.hexdigest()


async def url_of(sb: Sandbox, pid: str, file_id: str, **extra: Any) -> tuple[int, Any]:
    body = {"processInstanceId": pid, "fileId": file_id, **extra}
    return await sb.call("POST", URLS, json=body, headers=await token(sb))


async def fetch(sb: Sandbox, uri: str, **kwargs: Any) -> tuple[int, bytes, Any]:
    async with sb.http.get(uri, **kwargs) as response:
        return response.status, await response.read(), response.headers


class TestDemoAttachments:
    def test_value_shape_and_mix(self, sb: Sandbox) -> None:
        """0, 1 and several files; PDFs and images; one over 5 MB; read format of §3.4."""
        counts = {len(files_of_form(i.form)) for i in sb.state.instances.values()}
        assert {0, 1}.issubset(counts) and max(counts) >= 2, counts
        files = [f for _, fs in with_files(sb.state) for f in fs]
        assert {"pdf"} < {f.file_type for f in files}
        assert any(f.file_size > 5_000_000 for f in files)
        comp = next(
            c
            for i, _ in with_files(sb.state)
            for c in i.form
            if c["component_type"] == "DDAttachment"
        )
        value = orjson.loads(comp["value"])
        assert isinstance(comp["value"], str) and comp["name"] == "附件"
        for entry in value:
            assert set(entry) == {"spaceId", "fileName", "fileSize", "fileType", "fileId"}
            assert isinstance(entry["spaceId"], str) and isinstance(entry["fileId"], str)
            assert isinstance(entry["fileSize"], int)
            assert entry["fileName"].endswith("." + entry["fileType"])

    def test_same_seed_same_files(self) -> None:
        a, b = State(seed=3, manual_now_ms=T0), State(seed=3, manual_now_ms=T0)
        a.seed_demo(20)
        b.seed_demo(20)
        assert [i.form for i in a.instances.values()] == [i.form for i in b.instances.values()]


class TestDownload:
    async def test_large_file_byte_exact(self, sb: Sandbox) -> None:
        inst, big = next(
            (i, f) for i, fs in with_files(sb.state) for f in fs if f.file_size > 5_000_000
        )
        status, body = await url_of(sb, inst.id, big.file_id, withCommentAttatchment=True)
        assert status == 200 and body["success"] is True, body
        result = body["result"]
        assert result["fileId"] == big.file_id and result["spaceId"] == int(big.space_id)
        assert isinstance(result["spaceId"], int)
        got, data, headers = await fetch(sb, result["downloadUri"])
        assert got == 200 and len(data) == big.file_size
        assert hashlib.sha256(data).hexdigest() == expected_sha(sb.state, big)
        assert data.startswith(b"%PDF") or big.file_type != "pdf"
        assert headers["Content-Length"] == str(big.file_size)
        # the control API reports the same digest
        _, listed = await sb.call("GET", f"/_sandbox/attachments/{inst.id}")
        row = next(r for r in listed["files"] if r["fileId"] == big.file_id)
        assert row["sha256"] == hashlib.sha256(data).hexdigest()

    async def test_range(self, sb: Sandbox) -> None:
        inst, files = with_files(sb.state)[0]
        file = files[0]
        _, body = await url_of(sb, inst.id, file.file_id)
        uri = body["result"]["downloadUri"]
        whole = b"".join(file_bytes(sb.state.seed, file))
        status, part, headers = await fetch(sb, uri, headers={"Range": "bytes=100-1099"})
        assert status == 206 and part == whole[100:1100]
        assert headers["Content-Range"] == f"bytes 100-1099/{file.file_size}"
        assert file.file_size > BLOCK + 20  # a range across the 64 KiB block boundary:
        span = {"Range": f"bytes={BLOCK - 7}-{BLOCK + 9}"}
        status, part, _ = await fetch(sb, uri, headers=span)
        assert status == 206 and part == whole[BLOCK - 7 : BLOCK + 10]
        status, tail, _ = await fetch(sb, uri, headers={"Range": "bytes=-10"})
        assert status == 206 and tail == whole[-10:]
        status, _, headers = await fetch(sb, uri, headers={"Range": f"bytes={file.file_size}-"})
        assert status == 416 and headers["Content-Range"] == f"bytes */{file.file_size}"

    async def test_expiry_by_clock_and_knob(self, sb: Sandbox) -> None:
        inst, files = with_files(sb.state)[0]
        _, body = await url_of(sb, inst.id, files[0].file_id)
        uri = body["result"]["downloadUri"]
        sb.state.manual_now_ms = T0 + 15 * 60_000 - 1
        assert (await fetch(sb, uri))[0] == 200
        sb.state.manual_now_ms = T0 + 15 * 60_000  # valid 15 minutes (§9.3.1)
        status, text, _ = await fetch(sb, uri)
        assert status == 403 and b"<Code>AccessDenied</Code>" in text
        # a fresh URL works again; the expire knob kills it at once
        _, body = await url_of(sb, inst.id, files[0].file_id)
        uri = body["result"]["downloadUri"]
        assert (await fetch(sb, uri))[0] == 200
        _, expired = await sb.call("POST", "/_sandbox/attachments/expire")
        assert expired["expired"] >= 1
        assert (await fetch(sb, uri))[0] == 403
        await sb.call("POST", "/_sandbox/attachments/knobs", json={"url_ttl_seconds": 0})
        _, body = await url_of(sb, inst.id, files[0].file_id)
        assert (await fetch(sb, body["result"]["downloadUri"]))[0] == 403

    async def test_missing_file_is_404(self, sb: Sandbox) -> None:
        inst, files = with_files(sb.state)[0]
        knob = {"missing_file_ids": [files[0].file_id]}
        status, _ = await sb.call("POST", "/_sandbox/attachments/knobs", json=knob)
        assert status == 200
        _, body = await url_of(sb, inst.id, files[0].file_id)
        status, text, _ = await fetch(sb, body["result"]["downloadUri"])
        assert status == 404 and b"NoSuchKey" in text

    async def test_departed_originator(self, sb: Sandbox) -> None:
        inst, files = with_files(sb.state)[0]
        knob = {"departed_userids": [inst.originator]}
        await sb.call("POST", "/_sandbox/attachments/knobs", json=knob)
        status, body = await url_of(sb, inst.id, files[0].file_id, withCommentAttatchment=True)
        assert (status, body["code"]) == (400, "userNotExist"), body
        assert body["requestid"] and body["message"]

    async def test_documented_errors(self, sb: Sandbox) -> None:
        (inst, files), (_, other_files) = with_files(sb.state)[:2]
        cases = [
            ({"fileId": files[0].file_id}, "invalidProcessInstanceId"),
            ({"processInstanceId": inst.id}, "invalidFileId"),
            ({"processInstanceId": "x" * 36, "fileId": "1"}, "processInstNotExist"),
            # a file of another instance is not downloadable through this one
            ({"processInstanceId": inst.id, "fileId": other_files[0].file_id}, "invalidFileId"),
        ]
        for body, code in cases:
            status, answer = await sb.call("POST", URLS, json=body, headers=await token(sb))
            assert (status, answer["code"]) == (400, code), (body, answer)
        status, answer = await sb.call("POST", URLS, json={"processInstanceId": inst.id})
        assert status == 400 and answer["code"] == "AuthenticationFailed.MissingParameter"

    async def test_permission(self, sb: Sandbox) -> None:
        inst, files = with_files(sb.state)[0]
        knob = {"write_denied_apps": [DEMO_APP.app_key]}
        await sb.call("POST", "/_sandbox/attachments/knobs", json=knob)
        status, body = await url_of(sb, inst.id, files[0].file_id)
        assert status == 403 and "Workflow.Instance.Write" in body["message"]

    async def test_zero_byte_and_added_file(self, sb: Sandbox) -> None:
        inst, _ = with_files(sb.state)[0]
        for size in (0, 3):
            status, _ = await sb.call(
                "POST",
                f"/_sandbox/attachments/{inst.id}/files",
                json={"fileSize": size, "fileType": "png", "fileName": f"s{size}.png"},
            )
            assert status == 200
        zero, three = (f for f in files_of_form(inst.form) if f.file_name in ("s0.png", "s3.png"))
        status, body = await url_of(sb, inst.id, zero.file_id)
        assert status == 400 and body["code"] == "invalidParameter"
        _, body = await url_of(sb, inst.id, three.file_id)
        status, data, _ = await fetch(sb, body["result"]["downloadUri"])
        assert status == 200 and data == b"\x89PN"


class TestComments:
    async def test_comment_recorded_and_rendered(self, sb: Sandbox) -> None:
        inst = next(iter(sb.state.instances.values()))
        user = next(e.userid for e in EMPLOYEES if e.userid != inst.originator)
        body = {
            "processInstanceId": inst.id,
            "text": "已生成金蝶单据 FYBX000123",
            "commentUserId": user,
        }
        status, answer = await sb.call("POST", COMMENTS, json=body, headers=await token(sb))
        assert (status, answer) == (200, {"result": True, "success": True})
        _, listed = await sb.call("GET", "/_sandbox/comments", params={"instance_id": inst.id})
        assert [(c["text"], c["commentUserId"]) for c in listed["comments"]] == [
            ("已生成金蝶单据 FYBX000123", user)
        ]
        _, detail = await sb.call(
            "GET",
            "/v1.0/workflow/processInstances",
            params={"processInstanceId": inst.id},
            headers=await token(sb),
        )
        remarks = [r for r in detail["result"]["operationRecords"] if r["type"] == "ADD_REMARK"]
        assert [(r["remark"], r["userId"]) for r in remarks] == [(body["text"], user)]

    async def test_comment_attachment_needs_flag(self, sb: Sandbox) -> None:
        inst = next(iter(sb.state.instances.values()))
        att = {
            "spaceId": "1",
            "fileSize": "2048",
            "fileId": "99",
            "fileName": "a.pdf",
            "fileType": "pdf",
        }
        body = {
            "processInstanceId": inst.id,
            "text": "见附件",
            "commentUserId": inst.approver,
            "file": {"attachments": [att]},
        }
        status, _ = await sb.call("POST", COMMENTS, json=body, headers=await token(sb))
        assert status == 200
        status, answer = await url_of(sb, inst.id, "99")
        assert (status, answer["code"]) == (400, "noPermission")
        status, answer = await url_of(sb, inst.id, "99", withCommentAttatchment=True)
        assert status == 200
        got, data, _ = await fetch(sb, answer["result"]["downloadUri"])
        assert got == 200 and len(data) == 2048

    async def test_comment_errors(self, sb: Sandbox) -> None:
        inst = next(iter(sb.state.instances.values()))
        ok = {"processInstanceId": inst.id, "text": "x", "commentUserId": inst.approver}
        att = {"spaceId": "1", "fileSize": "1", "fileId": "9", "fileName": "a", "fileType": "pdf"}
        cases: list[tuple[dict[str, Any], str]] = [
            ({"processInstanceId": ""}, "invalidInstanceId"),
            ({"text": ""}, "invalidInstanceCommentText"),
            ({"text": "字" * 1025}, "invalidInstanceCommentText"),
            ({"commentUserId": None}, "invalidInstanceCommentUserId"),
            ({"file": {"attachments": [att] * 21}}, "invalidParameter"),
            ({"processInstanceId": "y" * 36}, "aflowProcessInstNotExist"),
            ({"commentUserId": "nobody"}, "userNotExist"),
        ]
        for change, code in cases:
            status, answer = await sb.call(
                "POST", COMMENTS, json={**ok, **change}, headers=await token(sb)
            )
            assert (status, answer["code"]) == (400, code), (change, answer)
        status, _ = await sb.call(
            "POST", COMMENTS, json={**ok, "text": "字" * 1024}, headers=await token(sb)
        )
        assert status == 200
        finished = next(i for i in sb.state.instances.values() if i.status == "COMPLETED")
        await sb.call(
            "POST", "/_sandbox/attachments/knobs", json={"refuse_finished_comments": True}
        )
        status, answer = await sb.call(
            "POST",
            COMMENTS,
            json={**ok, "processInstanceId": finished.id},
            headers=await token(sb),
        )
        assert (status, answer["code"]) == (400, "aflowProcessInstCanNotBeExecuted")
        _, listed = await sb.call("GET", "/_sandbox/comments")
        assert len(listed["comments"]) == 1

    async def test_bad_knob(self, sb: Sandbox) -> None:
        status, _ = await sb.call("POST", "/_sandbox/attachments/knobs", json={"nope": 1})
        assert status == 400
