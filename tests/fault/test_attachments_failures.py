"""Issue #18 failure cases, each handled as DESIGN §11 documents, nothing lost, no second bill:

* expired download URLs (every issued URL expired while the loader was down) → refresh requests,
  new URLs, every file attached once;
* a 404 file, a file over the flow's 20 MB limit, a Kingdee refusal of the upload → dead letters
  in ``dlq.loader`` naming the file and what to do; after the cause is fixed (file back, Kingdee
  chunk limit restored) ``dingdee dlq replay`` attaches the file, and the bill stays one bill.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import httpx
import pytest

from dingdee_common.kafka.dlq import ERROR_MESSAGE, ERROR_TYPE
from dingdee_dev.stack import Stack, StackConfig
from tests.fault.test_attachments_sigkill import bill_of
from tests.helpers import demo_flows_file, dingdee, poll_until, read_topic
from tests.integration.test_attachments_e2e import (
    FORM,
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


async def metric(stack: Stack, service: str, pattern: str) -> float:
    async with httpx.AsyncClient(timeout=2.0) as client:
        text = (await client.get(f"http://127.0.0.1:{stack.ops_ports[service]}/metrics")).text
    return sum(float(m) for m in re.findall(pattern + r" (\S+)", text))


async def dead_letters(stack: Stack) -> list[dict[str, str]]:
    records = await read_topic(stack.kafka, stack.topics.dlq("loader"))
    return [
        {k: v.decode() for k, v in r.headers if k in (ERROR_TYPE, ERROR_MESSAGE)} for r in records
    ]


async def wait_files(
    stack: Stack, pid: str, bill: str, want: Counter[tuple[str, int, str]]
) -> None:
    async def done() -> bool:
        return await attached(stack, bill) == want

    await poll_until(done, timeout=180, what=f"the files of {bill}")


async def test_expired_404_over_limit_and_kingdee_refusal(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    config = StackConfig(
        workdir=tmp_path,
        flows_file=demo_flows_file(),
        demo=4,
        seed=9,
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"attf{tmp_path.name[-6:]}.",
    )
    async with Stack(config) as stack:
        demo = [e for e in await stack.expected_approvals() if e["process_code"] == PETTY]
        template = await template_with_files(stack)
        for e in demo:  # the demo's own files first, so that later counts are this test's
            bill = await bill_of(stack, e["process_instance_id"])
            await wait_files(
                stack,
                e["process_instance_id"],
                bill,
                await expected_files(stack, e["process_instance_id"]),
            )

        # 1. expired URLs: the loader is killed once the bill's result was handled (its comment
        # is written just before the work items go out) and before an upload ends (Kingdee
        # slowed); the extractor issues the URLs, then they all expire
        await _post(stack.kingdee_url, "/_sandbox/config", {"latency_call_seconds": 1.0})
        issued_pattern = r'dingdee_attachment_urls_total\{[^}]*result="issued"\}'
        issued = await metric(stack, "extractor", issued_pattern)
        expiring = await add_approval(stack, template, [])
        expiring_bill = await bill_of(stack, expiring)
        n_files = sum((await expected_files(stack, expiring)).values())
        assert n_files >= 1

        async def handled() -> bool:
            return expiring in await comments_by_instance(stack)

        await poll_until(handled, timeout=120, what="the bill's result handled", interval=0.05)
        stack.kill("loader")
        await _post(stack.kingdee_url, "/_sandbox/config", {"latency_call_seconds": 0.0})
        assert not await attached(stack, expiring_bill), "the kill must land before the upload"

        async def issued_all() -> bool:
            return await metric(stack, "extractor", issued_pattern) >= issued + n_files

        await poll_until(issued_all, timeout=120, what="URLs issued while the loader is down")
        expired = await _post(stack.dingtalk_url, "/_sandbox/attachments/expire", {})
        assert expired["expired"] >= n_files
        stack.start_service("loader")
        await stack.wait_alive("loader")
        await wait_files(stack, expiring, expiring_bill, await expected_files(stack, expiring))
        refreshed = await metric(
            stack, "loader", r'dingdee_attachment_files_total\{[^}]*result="refresh_requested"\}'
        )
        assert refreshed >= n_files, "every expired URL was renewed, not failed"

        # 2. a 404 file and 3. a file over the limit, on one approval
        files = [
            {
                "fileName": "丢失.pdf",
                "fileType": "pdf",
                "fileSize": 300_000,
                "fileId": "77700000001",
            },
            {"fileName": "超大.pdf", "fileType": "pdf", "fileSize": 21_000_000},
        ]
        knobs = {"missing_file_ids": ["77700000001"]}
        await _post(stack.dingtalk_url, "/_sandbox/attachments/knobs", knobs)
        broken = await add_approval(stack, template, files)
        broken_bill = await bill_of(stack, broken)

        async def two_letters() -> bool:
            return len(await dead_letters(stack)) >= 2

        await poll_until(two_letters, timeout=120, what="two attachment dead letters")
        letters = {d[ERROR_TYPE]: d[ERROR_MESSAGE] for d in await dead_letters(stack)}
        assert "丢失.pdf" in letters["attachment_not_found"]
        assert "21.0 MB" in letters["attachment_too_large"]
        assert "max_bytes" in letters["attachment_too_large"]
        # the other files of that approval are attached regardless
        others = Counter(
            {
                k: v
                for k, v in (await expected_files(stack, broken)).items()
                if k[0] not in ("丢失.pdf", "超大.pdf")
            }
        )
        await wait_files(stack, broken, broken_bill, others)

        # the file is back: replaying its dead letter attaches it, the over-limit one stays out
        await _post(stack.dingtalk_url, "/_sandbox/attachments/knobs", {"missing_file_ids": []})
        code, out = await dingdee(
            stack.kafka, "dlq", "replay", "--stage", "loader", "--error-type",
            "attachment_not_found", "--execute", "--who", "test",
        )  # fmt: skip
        assert code == 0, out
        want_back = others + Counter(
            {k: v for k, v in (await expected_files(stack, broken)).items() if k[0] == "丢失.pdf"}
        )
        await wait_files(stack, broken, broken_bill, want_back)

        # 4. Kingdee refuses the upload (its chunk limit below the loader's chunk)
        await _post(stack.kingdee_url, "/_sandbox/config", {"attachment_max_chunk_bytes": 10_000})
        refused = await add_approval(stack, template, [])
        refused_bill = await bill_of(stack, refused)
        n_refused = sum((await expected_files(stack, refused)).values())
        assert n_refused >= 1

        async def refusals() -> bool:
            kinds = [d[ERROR_TYPE] for d in await dead_letters(stack)]
            return kinds.count("kingdee_attachment_refused") >= n_refused

        await poll_until(refusals, timeout=120, what="Kingdee refusals dead-lettered")
        assert not await attached(stack, refused_bill)
        await _post(stack.kingdee_url, "/_sandbox/config", {"attachment_max_chunk_bytes": 4 << 20})
        code, out = await dingdee(
            stack.kafka, "dlq", "replay", "--stage", "loader", "--error-type",
            "kingdee_attachment_refused", "--execute", "--who", "test",
        )  # fmt: skip
        assert code == 0, out
        await wait_files(stack, refused, refused_bill, await expected_files(stack, refused))

        bills = Counter(b["number"] for b in await stack.kingdee_bills(FORM))
        for pid in (expiring, broken, refused):
            number = await bill_of(stack, pid)
            assert bills[number] == 1, f"{number}: one bill, replays make none ({bills})"
        assert await attached(stack, broken_bill) == want_back, "the over-limit file stays out"
