"""Issue #18, the write-back's failure paths (DESIGN §11):

* a comment DingTalk refuses (finished approvals take no comments:
  ``aflowProcessInstCanNotBeExecuted``) is a dead letter on ``dlq.extractor`` saying what to fix
  and how to replay; replayed while the cause stays, it is refused (and dead-lettered) again;
  once fixed, ``dingdee dlq replay`` posts exactly one comment — a second copy of the request
  posts none — and the bill stays one bill;
* DingTalk refusing every follow-up call (403: the app lost ``Workflow.Instance.Write``) holds
  the follow-ups: after ``DINGDEE_FOLLOWUPS__STUCK_SECONDS`` the extractor's ``/readyz`` says so
  and ``dingdee_followups_oldest_pending_seconds`` grows; nothing is dead-lettered; once DingTalk
  answers, the comment is posted once, the gauge falls to 0 and the extractor is ready again.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx
import pytest

from dingdee_common.kafka.clients import make_producer
from dingdee_common.kafka.dlq import ERROR_MESSAGE, ERROR_TYPE, ORIGINAL_TOPIC
from dingdee_dev.stack import Stack, StackConfig
from dingdee_sandbox.demo_org import DEMO_APP
from tests.fault.test_attachments_failures import metric
from tests.fault.test_attachments_sigkill import bill_of
from tests.helpers import demo_flows_file, dingdee, poll_until, read_topic, wait_not_ready
from tests.integration.test_attachments_e2e import (
    FORM,
    PETTY,
    _post,
    add_approval,
    comments_by_instance,
    template_with_files,
)

pytestmark = [pytest.mark.fault, pytest.mark.slow]

KNOBS = "/_sandbox/attachments/knobs"
CLOSED = "aflowProcessInstCanNotBeExecuted"
DUPLICATES = r'dingdee_writebacks_total\{[^}]*result="duplicate"\}'
OLDEST = r"\ndingdee_followups_oldest_pending_seconds"  # the sample, not its HELP line


def config(tmp_path: Path, prefix: str, **env: str) -> StackConfig:
    return StackConfig(
        workdir=tmp_path,
        flows_file=demo_flows_file(),
        demo=3,
        seed=18,
        kafka_bootstrap=env.pop("bootstrap"),
        topic_prefix=f"{prefix}{tmp_path.name[-6:]}.",
        env={
            "DINGDEE_OUTAGE__MAX_BACKOFF_SECONDS": "1",
            "DINGDEE_RETRY__MAX_BACKOFF_SECONDS": "1",
            **env,
        },
    )


async def demo_commented(stack: Stack) -> None:
    """Every demo petty-cash approval has its comment (the follow-ups are idle)."""
    pids = {
        e["process_instance_id"]
        for e in await stack.expected_approvals()
        if e["process_code"] == PETTY
    }

    async def done() -> bool:
        return set(await comments_by_instance(stack)) >= pids

    await poll_until(done, timeout=180, what="the demo approvals' comments")


async def extractor_letters(stack: Stack) -> list[tuple[dict[str, str], bytes | None]]:
    records = await read_topic(stack.kafka, stack.topics.dlq("extractor"))
    return [({k: v.decode() for k, v in r.headers}, r.value) for r in records]


async def test_a_refused_write_back_replays_into_one_comment(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    async with Stack(config(tmp_path, "wbr", bootstrap=kafka_bootstrap)) as stack:
        await demo_commented(stack)
        template = await template_with_files(stack)
        await _post(stack.dingtalk_url, KNOBS, {"refuse_finished_comments": True})
        pid = await add_approval(stack, template, [])
        bill = await bill_of(stack, pid)

        async def letters(n: int) -> bool:
            return len(await extractor_letters(stack)) >= n

        await poll_until(lambda: letters(1), timeout=120, what="the refused comment's letter")
        [(headers, value)] = await extractor_letters(stack)
        assert headers[ERROR_TYPE] == CLOSED
        assert headers[ORIGINAL_TOPIC] == stack.topics.writeback_requests
        reason = headers[ERROR_MESSAGE]
        assert pid in reason and "in its present state" in reason, reason
        assert f"dingdee dlq replay --stage extractor --key {pid} --execute" in reason
        assert pid not in await comments_by_instance(stack)
        assert any(b["number"] == bill for b in await stack.kingdee_bills(FORM))

        # replayed before the cause is fixed: refused again, a new letter, still no comment
        code, out = await dingdee(
            stack.kafka, "dlq", "replay", "--stage", "extractor", "--key", pid,
            "--execute", "--who", "test",
        )  # fmt: skip
        assert code == 0, out
        await poll_until(lambda: letters(2), timeout=60, what="the replay refused again")
        assert pid not in await comments_by_instance(stack)

        # fixed: the replay posts the comment once
        await _post(stack.dingtalk_url, KNOBS, {"refuse_finished_comments": False})
        code, out = await dingdee(
            stack.kafka, "dlq", "replay", "--stage", "extractor", "--key", pid,
            "--execute", "--who", "test",
        )  # fmt: skip
        assert code == 0, out

        async def commented() -> bool:
            return pid in await comments_by_instance(stack)

        await poll_until(commented, timeout=60, what="the replayed comment")
        # a second copy of the request (a replay run copying again) posts nothing
        before = await metric(stack, "extractor", DUPLICATES)
        producer = make_producer(stack.kafka)
        await producer.start()
        try:
            await producer.send_and_wait(
                stack.topics.writeback_requests, value=value, key=pid.encode()
            )
        finally:
            await producer.stop()

        async def seen() -> bool:
            return await metric(stack, "extractor", DUPLICATES) > before

        await poll_until(seen, timeout=60, what="the second copy handled as a duplicate")
        assert (await comments_by_instance(stack))[pid] == [f"已生成金蝶费用报销单 {bill}"]
        assert len(await extractor_letters(stack)) == 2
        bills = Counter(b["number"] for b in await stack.kingdee_bills(FORM))
        assert bills[bill] == 1


async def test_follow_ups_held_by_dingtalk_make_the_extractor_not_ready(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = {
        "DINGDEE_FOLLOWUPS__STUCK_SECONDS": "6",
        "DINGDEE_FOLLOWUPS__CHECK_INTERVAL_SECONDS": "1",
    }
    async with Stack(config(tmp_path, "wbs", bootstrap=kafka_bootstrap, **env)) as stack:
        await demo_commented(stack)
        port = stack.ops_ports["extractor"]
        assert await metric(stack, "extractor", OLDEST) == 0.0
        template = await template_with_files(stack)
        await _post(stack.dingtalk_url, KNOBS, {"write_denied_apps": [DEMO_APP.app_key]})
        pid = await add_approval(stack, template, [])
        await wait_not_ready(port, "follow-ups behind", timeout=120)
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{port}/readyz")).text
        assert "DINGDEE_FOLLOWUPS__STUCK_SECONDS=6" in text and "nothing is dead-lettered" in text
        held = await metric(stack, "extractor", OLDEST)
        assert held > 6.0
        await asyncio.sleep(3)
        assert await metric(stack, "extractor", OLDEST) >= held + 2.0, "the age grows"
        assert pid not in await comments_by_instance(stack)
        counts = await stack.topic_counts()
        assert counts["dlq.extractor"] == 0, counts

        await _post(stack.dingtalk_url, KNOBS, {"write_denied_apps": []})

        async def ready_again() -> bool:
            async with httpx.AsyncClient() as client:
                response = await client.get(f"http://127.0.0.1:{port}/readyz")
            return response.status_code == 200

        await poll_until(ready_again, timeout=60, what="the extractor ready again")
        await poll_until(lambda: _commented(stack, pid), timeout=30, what="the held comment posted")
        assert await metric(stack, "extractor", OLDEST) == 0.0
        assert len((await comments_by_instance(stack))[pid]) == 1
        counts = await stack.topic_counts()
        assert counts["dlq.extractor"] == 0, counts


async def _commented(stack: Stack, pid: str) -> bool:
    return pid in await comments_by_instance(stack)
