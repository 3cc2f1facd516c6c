"""Issue #18: DingTalk refusing the follow-up calls (the app lost ``Workflow.Instance.Write``:
403 on the download-URL and comment APIs) and Kingdee answering 5xx to every upload are waited
out: nothing is dead-lettered, and once both answer again the approval has its one comment and
its bill every file, once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dingdee_dev.stack import Stack, StackConfig
from dingdee_sandbox.demo_org import DEMO_APP
from tests.fault.test_attachments_failures import metric
from tests.fault.test_attachments_sigkill import bill_of
from tests.helpers import demo_flows_file, poll_until
from tests.integration.test_attachments_e2e import (
    FORM,
    _post,
    add_approval,
    attached,
    comments_by_instance,
    expected_files,
    template_with_files,
)

pytestmark = [pytest.mark.fault, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
FAULTS = ["save", "batchsave", "executebillquery", "billquery", "view", "attachmentupload"]
# the follow-up calls DingTalk refused (403: the app lost Workflow.Instance.Write)
REFUSED = (
    r'dingdee_dingtalk_requests_total\{[^}]*api="(?:comment_v1|file_url_v1)"'
    r'[^}]*errcode="(?!0")[^"]*"[^}]*\}'
)
KINGDEE_FAILED = r"dingdee_loader_kingdee_errors_total\{[^}]*\}"


async def no_dead_letters(stack: Stack) -> None:
    counts = await stack.topic_counts()
    assert counts["dlq.extractor"] == counts["dlq.loader"] == 0, counts


async def test_dingtalk_refusing_and_kingdee_down_are_waited_out(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    config = StackConfig(
        workdir=tmp_path,
        flows_file=demo_flows_file(),
        demo=4,
        seed=12,
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"atto{tmp_path.name[-6:]}.",
        env={"DINGDEE_OUTAGE__MAX_BACKOFF_SECONDS": "1", "DINGDEE_RETRY__MAX_BACKOFF_SECONDS": "1"},
    )
    async with Stack(config) as stack:
        template = await template_with_files(stack)
        await _post(
            stack.dingtalk_url,
            "/_sandbox/attachments/knobs",
            {"write_denied_apps": [DEMO_APP.app_key]},
        )
        pid = await add_approval(stack, template, [])
        bill = await bill_of(stack, pid)
        want = await expected_files(stack, pid)

        async def saved() -> bool:
            return any(b["number"] == bill for b in await stack.kingdee_bills(FORM))

        await poll_until(saved, timeout=120, what="the bill saved")

        async def refused_twice() -> bool:  # refused, waited, tried again, refused again
            return await metric(stack, "extractor", REFUSED) >= 2

        # was a fixed 8 s sleep; the refusals themselves show the follow-ups were tried
        await poll_until(refused_twice, timeout=60, what="DingTalk refusing the follow-ups")
        assert pid not in await comments_by_instance(stack)
        assert not await attached(stack, bill)
        await no_dead_letters(stack)

        # Kingdee goes down for every call, then DingTalk answers again
        await _post(
            stack.kingdee_url, "/_sandbox/config", {"fault_services": FAULTS, "http_5xx_rate": 1.0}
        )
        await _post(stack.dingtalk_url, "/_sandbox/attachments/knobs", {"write_denied_apps": []})

        async def commented() -> bool:
            return pid in await comments_by_instance(stack)

        await poll_until(commented, timeout=60, what="the comment once DingTalk answers")
        failed = await metric(stack, "loader", KINGDEE_FAILED)

        async def retried() -> bool:  # the loader's calls for the files failed, more than once
            return await metric(stack, "loader", KINGDEE_FAILED) >= failed + 2

        # was a fixed 6 s sleep: now until the loader has met the outage at least twice
        await poll_until(retried, timeout=60, what="the loader retrying the uploads")
        assert not await attached(stack, bill)
        await no_dead_letters(stack)

        await _post(stack.kingdee_url, "/_sandbox/config", {"http_5xx_rate": 0.0})

        async def all_files() -> bool:
            return await attached(stack, bill) == want

        await poll_until(all_files, timeout=120, what="every file once Kingdee answers")
        await asyncio.sleep(3)
        assert await attached(stack, bill) == want
        assert (await comments_by_instance(stack))[pid] == [f"已生成金蝶费用报销单 {bill}"]
        await no_dead_letters(stack)
