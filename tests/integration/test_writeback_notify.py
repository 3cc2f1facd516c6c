"""Issue #18, the optional work notification (``writeback.notify: both``): every approval gets its
one comment and one work notification to its applicant, with the same text, through the
extractor's DingTalk client (token bucket, per-API count); the extractor re-reading every result
under a new consumer group sends neither again (``writeback.log`` keys per channel).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from dingdee_dev.stack import Stack, StackConfig
from tests.fault.test_attachments_failures import metric
from tests.helpers import demo_flows_file, poll_until
from tests.integration.test_attachments_e2e import PETTY, comments_by_instance

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DUPLICATES = r'dingdee_writebacks_total\{[^}]*result="duplicate"\}'
NOTIFY_CALLS = r'dingdee_dingtalk_requests_total\{[^}]*api="notify"[^}]*errcode="0"[^}]*\}'


async def notifications(stack: Stack) -> list[dict[str, Any]]:
    data = await stack.sandbox_json(stack.dingtalk_url, "/_sandbox/notifications")
    return list(data["notifications"])


async def test_a_comment_and_a_notification_once_each(kafka_bootstrap: str, tmp_path: Path) -> None:
    flows = tmp_path / "flows.yaml"
    text = demo_flows_file().read_text(encoding="utf-8")
    assert text.count("comment_user: originator\n") == 1
    flows.write_text(
        text.replace("comment_user: originator\n", "comment_user: originator\n      notify: both\n")
    )
    config = StackConfig(
        workdir=tmp_path / "run",
        flows_file=flows,
        demo=4,
        seed=31,
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"wbn{tmp_path.name[-6:]}.",
    )
    async with Stack(config) as stack:
        approvals = {
            e["process_instance_id"]
            for e in await stack.expected_approvals()
            if e["process_code"] == PETTY
        }
        assert approvals

        async def all_sent() -> bool:
            notified = {n["content"] for n in await notifications(stack)}
            comments = await comments_by_instance(stack)
            return set(comments) >= approvals and len(notified) >= len(approvals)

        await poll_until(all_sent, timeout=180, what="a comment and a notification each")
        comments = await comments_by_instance(stack)
        sent = await notifications(stack)
        assert len(sent) == len(approvals), sent
        assert all(n["delivered"] and n["msgtype"] == "text" for n in sent)
        for pid in approvals:
            [comment] = comments[pid]
            mine = [n for n in sent if n["content"] == comment]
            assert len(mine) == 1, (pid, comment, sent)
            data = await stack.sandbox_json(stack.dingtalk_url, f"/_sandbox/instances/{pid}")
            applicant = data["process_instance"]["originator_userid"]
            assert mine[0]["userid"] == applicant, "to the applicant"
        assert await metric(stack, "extractor", NOTIFY_CALLS) == len(approvals)

        # the extractor re-reads every result under a new group: nothing is sent twice
        proc = stack.processes["extractor"]
        stack.kill("extractor")
        proc.env["DINGDEE_GROUP_ID"] = "dingdee-extractor-again"
        stack.start_service("extractor")
        await stack.wait_alive("extractor")

        async def reread() -> bool:
            try:
                return await metric(stack, "extractor", DUPLICATES) >= 2 * len(approvals)
            except OSError:
                return False

        await poll_until(reread, timeout=120, what="every result read again")
        await asyncio.sleep(2)
        assert await notifications(stack) == sent
        assert await comments_by_instance(stack) == comments
