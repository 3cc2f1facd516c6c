"""Issue #18 end to end: approvals with 0, 1 and several attachments (PDFs and images, some over
5 MB) become bills with exactly those files attached in the Kingdee sandbox (sha256 compared),
and each approval gets exactly one write-back comment naming its bill number.

Broker, both sandboxes and the three services run as separate processes (``Stack``). The
approvals are the petty-cash demo ones (1–3 files each in 附件, and a 票据 receipt in about one
费用明细 row of four) plus three made here: one without files, one with two extra large images
added through the sandbox's control API, one whose only file sits in a table row.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from dingdee_dev.stack import Stack, StackConfig
from tests.helpers import clear_files, demo_flows_file, poll_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PETTY = "PROC-BYJ-7F3A2C91"
FORM = "ER_ExpReimbursement"


async def _post(base: str, path: str, body: dict[str, Any]) -> Any:
    async with httpx.AsyncClient(timeout=30.0) as client:
        response = await client.post(f"{base}{path}", json=body)
        response.raise_for_status()
        return response.json()


async def add_approval(stack: Stack, template_id: str, files: list[dict[str, Any]] | None) -> str:
    """A new approved petty-cash approval with ``template_id``'s form; its files (附件 and the
    table rows' 票据) emptied (None) or with ``files`` added to 附件."""
    data = await stack.sandbox_json(stack.dingtalk_url, f"/_sandbox/instances/{template_id}")
    form = data["process_instance"]["form_component_values"]
    if files is None:
        clear_files(form)
    body = {"process_code": PETTY, "form_component_values": form}
    created = await _post(stack.dingtalk_url, "/_sandbox/instances", body)
    for file in files or []:
        await _post(stack.dingtalk_url, f"/_sandbox/attachments/{created['id']}/files", file)
    await _post(stack.dingtalk_url, f"/_sandbox/instances/{created['id']}/approve", {})
    return str(created["id"])


async def add_row_file_approval(stack: Stack, template_id: str, file: dict[str, Any]) -> str:
    """A new approved petty-cash approval whose only file is ``file`` in the 票据 cell of its
    first 费用明细 row (dingtalk.md §9.3: files inside TableField rows; §3.4 value shape)."""
    data = await stack.sandbox_json(stack.dingtalk_url, f"/_sandbox/instances/{template_id}")
    form = data["process_instance"]["form_component_values"]
    clear_files(form)
    table = next(c for c in form if c.get("component_type") == "TableField")
    rows = orjson.loads(table["value"])
    cell = next(c for c in rows[0]["rowValue"] if c["componentType"] == "DDAttachment")
    cell["value"] = orjson.dumps([{"spaceId": "115770306", **file}]).decode()
    table["value"] = orjson.dumps(rows).decode()
    body = {"process_code": PETTY, "form_component_values": form}
    created = await _post(stack.dingtalk_url, "/_sandbox/instances", body)
    await _post(stack.dingtalk_url, f"/_sandbox/instances/{created['id']}/approve", {})
    return str(created["id"])


async def row_files(stack: Stack, pid: str) -> set[str]:
    """The names of the files in the 费用明细 rows' 票据 cells of approval ``pid``."""
    data = await stack.sandbox_json(stack.dingtalk_url, f"/_sandbox/instances/{pid}")
    names: set[str] = set()
    for comp in data["process_instance"]["form_component_values"]:
        if comp.get("component_type") != "TableField" or "rowValue" not in comp["value"]:
            continue
        for row in orjson.loads(comp["value"]):
            for cell in row["rowValue"]:
                if cell["componentType"] == "DDAttachment" and cell["value"] not in ("null", ""):
                    names.update(f["fileName"] for f in orjson.loads(cell["value"]))
    return names


async def expected_files(stack: Stack, pid: str) -> Counter[tuple[str, int, str]]:
    data = await stack.sandbox_json(stack.dingtalk_url, f"/_sandbox/attachments/{pid}")
    return Counter((f["fileName"], f["fileSize"], f["sha256"]) for f in data["files"])


async def template_with_files(stack: Stack) -> str:
    """A petty-cash demo approval with at least one file (some demo ones have none)."""
    for e in await stack.expected_approvals():
        if e["process_code"] == PETTY and await expected_files(stack, e["process_instance_id"]):
            return str(e["process_instance_id"])
    raise AssertionError("no demo petty-cash approval with files")


async def attached(stack: Stack, bill_no: str) -> Counter[tuple[str, int, str]]:
    data = await stack.sandbox_json(
        stack.kingdee_url, "/_sandbox/attachments", form_id=FORM, bill_no=bill_no
    )
    return Counter((a["file_name"], a["size"], a["sha256"]) for a in data["attachments"])


async def comments_by_instance(stack: Stack) -> dict[str, list[str]]:
    data = await stack.sandbox_json(stack.dingtalk_url, "/_sandbox/comments")
    out: dict[str, list[str]] = {}
    for c in data["comments"]:
        out.setdefault(c["processInstanceId"], []).append(c["text"])
    return out


async def test_files_and_one_comment_per_approval(kafka_bootstrap: str, tmp_path: Path) -> None:
    config = StackConfig(
        workdir=tmp_path,
        flows_file=demo_flows_file(),
        demo=24,
        seed=18,
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"att{tmp_path.name[-6:]}.",
    )
    async with Stack(config) as stack:
        expected = [e for e in await stack.expected_approvals() if e["process_code"] == PETTY]
        assert expected, "the demo must approve some petty-cash approvals"
        template = await template_with_files(stack)
        empty = await add_approval(stack, template, None)
        big = [
            {"fileName": "发票大图.jpg", "fileType": "jpg", "fileSize": 6_100_000},
            {"fileName": "扫描件.png", "fileType": "png", "fileSize": 5_400_000},
        ]
        several = await add_approval(stack, template, big)
        receipt = {"fileId": "77700000001", "fileName": "出租车票.jpg", "fileType": "jpg"}
        in_row = await add_row_file_approval(stack, template, {**receipt, "fileSize": 345_678})
        approvals = {
            e["process_instance_id"]: e["business_id"]
            for e in await stack.expected_approvals()
            if e["process_code"] == PETTY
        }
        assert {empty, several, in_row} <= set(approvals)
        want = {pid: await expected_files(stack, pid) for pid in approvals}
        # files in table rows: the one made here, and the demo's own 票据 cells
        assert [n for n, _, _ in want[in_row]] == ["出租车票.jpg"]
        in_rows = {pid: await row_files(stack, pid) for pid in approvals}
        assert sum(len(names) for pid, names in in_rows.items() if pid != in_row) >= 1
        assert all(names <= {n for n, _, _ in want[pid]} for pid, names in in_rows.items())
        assert not want[empty] and sum(want[several].values()) >= 3
        assert any(size > 5_000_000 for c in want.values() for _, size, _ in c)
        assert {n.rsplit(".", 1)[-1] for c in want.values() for n, _, _ in c} >= {"pdf", "jpg"}

        async def complete() -> bool:
            comments = await comments_by_instance(stack)
            if set(comments) < set(approvals):
                return False
            for pid, business_id in approvals.items():
                if await attached(stack, f"BYJ{business_id}") != want[pid]:
                    return False
            return True

        await poll_until(complete, timeout=300, what="every file attached, every comment written")
        # settle: a duplicate would arrive after the first
        await asyncio.sleep(5)
        comments = await comments_by_instance(stack)
        for pid, business_id in approvals.items():
            assert await attached(stack, f"BYJ{business_id}") == want[pid], pid
            assert comments[pid] == [f"已生成金蝶费用报销单 BYJ{business_id}"], pid
        counts = await stack.topic_counts()
        assert counts["dlq.loader"] == 0
        files = sum(sum(c.values()) for c in want.values())
        rows = sum(len(names) for names in in_rows.values())
        print(orjson.dumps({"approvals": len(approvals), "files": files, "in_rows": rows}).decode())
