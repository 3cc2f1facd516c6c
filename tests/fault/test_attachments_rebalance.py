"""Issue #18: a rebalance of the loader's attachment group in the middle of a chunked upload
does not end the loader, and every file is still attached exactly once (sha256 compared).

Kingdee is slowed (0.5 s a call) so that an 18 MB file takes five chunk calls. Once the loader
has sent the first chunk of it, Kingdee slows to 3 s a call (the other four chunks take 12 s,
much longer than a group join) and a second member joins ``loader-attachments`` (a plain consumer in
this process, as a second loader pod would): the group rebalances while the upload is in hand,
and the upload ends after the group has moved on, so its commit meets the new generation.
The intruder commits nothing; it holds its share of the partitions until the big file is
attached and a little longer, then leaves, which rebalances the group a second time. The
loader must be the same process throughout, with both rebalances in its log.

The embedded broker (Tansu) accepts a commit of the previous generation, so here the refused
commit (``CommitFailedError``) that ended the loader before does not happen; that path is
``tests/unit/loader/test_attachment_rebalance.py``. This test shows the whole: the revoke waits
for the upload in hand, nothing is attached twice, the loader stays up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from dingdee_common.kafka.clients import make_consumer
from dingdee_common.kafka.topics import Topics
from dingdee_dev.stack import Stack, StackConfig
from tests.fault.test_attachments_sigkill import bill_of, upload_calls
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


async def intrude(stack: Stack, prefix: str, hold: Callable[[], Awaitable[bool]]) -> int:
    """Join the loader's attachment group, hold a share until ``hold`` answers True and 3 s
    more, leave; the number of partitions the intruder was given."""
    consumer = make_consumer(
        stack.kafka,
        Topics(prefix).attachments_work,
        group_id="loader-attachments",
        session_timeout_ms=10_000,
        heartbeat_interval_ms=1_000,
    )
    await consumer.start()
    try:
        held = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        while loop.time() < deadline and not held:
            await consumer.getmany(timeout_ms=500)  # read, never committed: the loader's later
            held = len(consumer.assignment())
        assert held, "the intruder was never given a partition"
        await poll_until(hold, timeout=180, what="the intruder's hold to end", interval=0.2)
        await asyncio.sleep(3.0)
        return held
    finally:
        await consumer.stop()  # leaves the group: a second rebalance


async def at_least(stack: Stack, calls: int) -> bool:
    return await upload_calls(stack) >= calls


async def test_rebalance_mid_upload_keeps_loader_up_and_files_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = f"atrb{tmp_path.name[-6:]}."
    config = StackConfig(
        workdir=tmp_path,
        flows_file=demo_flows_file(),
        demo=6,
        seed=7,
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=prefix,
        env={"DINGDEE_RETRY__INITIAL_BACKOFF_SECONDS": "0.2"},
    )
    async with Stack(config) as stack:
        loader = stack.processes["loader"].proc
        assert loader is not None

        async def petty() -> dict[str, str]:
            """Each approved petty-cash approval's bill number."""
            expected = await stack.expected_approvals()
            return {
                e["process_instance_id"]: await bill_of(stack, e["process_instance_id"])
                for e in expected
                if e["process_code"] == PETTY
            }

        async def complete() -> bool:
            for p, bill_no in (await petty()).items():
                if await attached(stack, bill_no) != await expected_files(stack, p):
                    return False
            return True

        # the demo's files first: from here on, every upload call is the new approval's
        await poll_until(complete, timeout=240, what="the demo approvals' files attached")
        template = await template_with_files(stack)
        await _post(stack.kingdee_url, "/_sandbox/config", {"latency_call_seconds": 0.5})
        before = await upload_calls(stack)
        big = [{"fileName": "合同扫描件.pdf", "fileType": "pdf", "fileSize": 18_000_000}]
        pid = await add_approval(stack, template, big)
        bill = await bill_of(stack, pid)
        small = sum((await expected_files(stack, pid)).values()) - 1  # uploaded before the big one

        await poll_until(
            lambda: at_least(stack, before + small + 1), timeout=180, what="a big chunk sent"
        )
        await _post(stack.kingdee_url, "/_sandbox/config", {"latency_call_seconds": 3.0})

        async def big_attached() -> bool:
            return any(size == 18_000_000 for _, size, _ in await attached(stack, bill))

        assert not await big_attached(), "the rebalance must start mid-upload"
        await intrude(stack, prefix, big_attached)

        await _post(stack.kingdee_url, "/_sandbox/config", {"latency_call_seconds": 0.0})

        await poll_until(complete, timeout=240, what="every file attached after the rebalances")
        await asyncio.sleep(3)  # a duplicate would come after the first
        bills = await petty()
        assert pid in bills
        for p, bill_no in bills.items():
            assert await attached(stack, bill_no) == await expected_files(stack, p), p
        comments = await comments_by_instance(stack)
        for p, bill_no in bills.items():
            assert comments.get(p) == [f"已生成金蝶费用报销单 {bill_no}"], p

        assert stack.processes["loader"].proc is loader and loader.poll() is None, (
            "the loader must survive the rebalances"
        )
        log = (tmp_path / "loader.log").read_text(encoding="utf-8")
        assert log.count('"loader.attachment.revoked"') >= 2, "both rebalances reach the worker"
        assert (await stack.topic_counts())["dlq.loader"] == 0
