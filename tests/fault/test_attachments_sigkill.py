"""Issue #18: SIGKILL of the loader between the bill save and the upload, and during a chunked
upload; after the restart every file is attached exactly once (sha256 compared).

Kingdee is slowed (0.5 s a call) so that an 18 MB file takes five chunk calls; the second kill
lands once the loader has sent at least two chunks of it (its own call metric) and before the
file's ``BOS_Attachment`` row exists.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from dingdee_dev.stack import Stack, StackConfig
from tests.helpers import demo_flows_file, poll_until
from tests.integration.test_attachments_e2e import (
    PETTY,
    _post,
    add_approval,
    attached,
    comments_by_instance,
    expected_files,
    template_with_files,
)

pytestmark = [pytest.mark.fault, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
_CALLS = re.compile(
    r'dingdee_loader_kingdee_request_duration_seconds_count\{service="attachmentupload"\} (\S+)'
)


async def upload_calls(stack: Stack) -> int:
    """AttachmentUpLoad calls the running loader made (its own metric)."""
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            text = (await client.get(f"http://127.0.0.1:{stack.ops_ports['loader']}/metrics")).text
    except httpx.HTTPError:
        return 0
    match = _CALLS.search(text)
    return int(float(match.group(1))) if match else 0


async def bill_of(stack: Stack, pid: str) -> str:
    data = await stack.sandbox_json(stack.dingtalk_url, f"/_sandbox/instances/{pid}")
    return f"BYJ{data['instance']['business_id']}"


async def test_loader_killed_before_and_during_uploads_attaches_each_file_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    config = StackConfig(
        workdir=tmp_path,
        flows_file=demo_flows_file(),
        demo=6,
        seed=5,
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"attk{tmp_path.name[-6:]}.",
        env={"DINGDEE_RETRY__INITIAL_BACKOFF_SECONDS": "0.2"},
    )
    async with Stack(config) as stack:
        await _post(stack.kingdee_url, "/_sandbox/config", {"latency_call_seconds": 0.5})
        template = await template_with_files(stack)

        # 1. between the save and the upload: kill as soon as the bill exists
        first = await add_approval(stack, template, [])
        first_bill = await bill_of(stack, first)

        async def saved() -> bool:
            bills = await stack.kingdee_bills("ER_ExpReimbursement")
            return any(b["number"] == first_bill for b in bills)

        await poll_until(saved, timeout=180, what="the first bill saved", interval=0.05)
        stack.kill("loader")
        assert not await attached(stack, first_bill), "the kill must land before the upload"
        stack.start_service("loader")
        await stack.wait_alive("loader")

        # 2. during a chunked upload of a 40 MB file
        before = await upload_calls(stack)
        big = [{"fileName": "合同扫描件.pdf", "fileType": "pdf", "fileSize": 18_000_000}]
        second = await add_approval(stack, template, big)
        second_bill = await bill_of(stack, second)
        small = sum((await expected_files(stack, second)).values()) - 1  # uploaded first

        async def mid_upload() -> bool:
            return await upload_calls(stack) >= before + small + 2

        await poll_until(mid_upload, timeout=180, what="two chunks of the big file sent")
        done = await attached(stack, second_bill)
        assert not any(size == 18_000_000 for _, size, _ in done), "kill must land mid-upload"
        stack.kill("loader")
        stack.start_service("loader")
        await stack.wait_alive("loader")

        everyone = {e["process_instance_id"] for e in await stack.expected_approvals()}
        petty = {
            e["process_instance_id"]
            for e in await stack.expected_approvals()
            if e["process_code"] == PETTY
        }
        assert {first, second} <= everyone
        want = {pid: await expected_files(stack, pid) for pid in petty}
        bills = {pid: await bill_of(stack, pid) for pid in petty}

        async def complete() -> bool:
            for pid in petty:
                if await attached(stack, bills[pid]) != want[pid]:
                    return False
            return True

        await poll_until(complete, timeout=180, what="every file attached after the kills")
        for pid in petty:
            assert await attached(stack, bills[pid]) == want[pid], pid
        comments = await comments_by_instance(stack)
        for pid in petty:
            assert comments.get(pid) == [f"已生成金蝶费用报销单 {bills[pid]}"], pid
