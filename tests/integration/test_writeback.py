"""Issue #18 write-back: one comment per approval and outcome, durably.

* saved bills get "已生成金蝶费用报销单 BYJ…"; bills Kingdee rejects (an originator mapped to a
  staff number Kingdee does not have) and approvals that cannot be mapped (补单事由 empty: a
  transformer dead letter) get "未能生成金蝶费用报销单：<reason>…"; each exactly once;
* an originator who has left: DingTalk refuses the files (``userNotExist``, loader dead letters
  saying so) and the comment signed by them (an extractor dead letter); the bill is saved;
* the extractor restarted under a new consumer group re-reads every ``bills.result`` record:
  ``writeback.log`` keeps it from commenting again, and the loader's alias check from attaching
  any file again.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from dingdee_common.kafka.dlq import ERROR_MESSAGE, ERROR_TYPE
from dingdee_dev.stack import Stack, StackConfig
from tests.fault.test_attachments_failures import metric
from tests.helpers import demo_flows_file, poll_until, read_topic
from tests.integration.test_attachments_e2e import (
    FORM,
    PETTY,
    _post,
    attached,
    comments_by_instance,
    expected_files,
    template_with_files,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
UNKNOWN_STAFF = "0123456789012356"  # mapped to EMP0099 below: Kingdee rejects the bill
DEPARTED = "0123456789012349"


async def approve(stack: Stack, template: str, originator: str, *, blank: str = "") -> str:
    """A new approved copy of ``template`` by ``originator`` (with component ``blank`` empty)."""
    data = await stack.sandbox_json(stack.dingtalk_url, f"/_sandbox/instances/{template}")
    form = data["process_instance"]["form_component_values"]
    for comp in form:
        if blank and comp.get("name") == blank:
            comp["value"] = ""
    body = {"process_code": PETTY, "form_component_values": form, "originator_userid": originator}
    created = await _post(stack.dingtalk_url, "/_sandbox/instances", body)
    await _post(stack.dingtalk_url, f"/_sandbox/instances/{created['id']}/approve", {})
    return str(created["id"])


async def letters(stack: Stack, stage: str) -> list[dict[str, str]]:
    records = await read_topic(stack.kafka, stack.topics.dlq(stage))
    return [
        {k: v.decode() for k, v in r.headers if k in (ERROR_TYPE, ERROR_MESSAGE)} for r in records
    ]


async def test_one_comment_per_approval_and_outcome_durably(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    flows = tmp_path / "flows.yaml"
    text = (demo_flows_file()).read_text(encoding="utf-8")
    assert f'"{UNKNOWN_STAFF}": EMP0012' in text
    flows.write_text(text.replace(f'"{UNKNOWN_STAFF}": EMP0012', f'"{UNKNOWN_STAFF}": EMP0099'))
    config = StackConfig(
        workdir=tmp_path / "run",
        flows_file=flows,
        demo=8,
        seed=21,
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"wb{tmp_path.name[-6:]}.",
    )
    async with Stack(config) as stack:
        template = await template_with_files(stack)
        rejected = await approve(stack, template, UNKNOWN_STAFF)
        unmappable = await approve(stack, template, "0123456789012345", blank="补单事由")
        approvals = {
            e["process_instance_id"]: f"BYJ{e['business_id']}"
            for e in await stack.expected_approvals()
            if e["process_code"] == PETTY
        }

        async def all_commented() -> bool:
            return set(await comments_by_instance(stack)) >= set(approvals)

        await poll_until(all_commented, timeout=180, what="a comment on every approval")
        saved = {b["number"] for b in await stack.kingdee_bills(FORM)}
        assert approvals[rejected] not in saved
        comments = await comments_by_instance(stack)
        for pid, number in approvals.items():
            if number in saved:
                assert comments[pid] == [f"已生成金蝶费用报销单 {number}"], pid
            else:
                [only] = comments[pid]
                assert only.startswith("未能生成金蝶费用报销单："), only
                assert "财务会处理" in only
        assert len(saved & set(approvals.values())) >= 1
        assert approvals[unmappable] not in saved
        assert "补单事由" in comments[unmappable][0], "the transformer's reason, in the comment"

        # an originator who has left
        await _post(
            stack.dingtalk_url, "/_sandbox/attachments/knobs", {"departed_userids": [DEPARTED]}
        )
        departed = await approve(stack, template, DEPARTED)
        n_files = sum((await expected_files(stack, departed)).values())
        assert n_files >= 1

        async def refused() -> bool:
            kinds = [d[ERROR_TYPE] for d in await letters(stack, "loader")]
            return kinds.count("userNotExist") >= n_files and bool(
                await letters(stack, "extractor")
            )

        await poll_until(refused, timeout=120, what="the departed originator's dead letters")
        loader_letters = [
            d for d in await letters(stack, "loader") if d[ERROR_TYPE] == "userNotExist"
        ]
        assert "has left" in loader_letters[0][ERROR_MESSAGE]
        assert "write-back" in (await letters(stack, "extractor"))[0][ERROR_MESSAGE]
        assert departed not in await comments_by_instance(stack)

        # the extractor re-reads every result under a new group: nothing is written twice
        before_comments = await comments_by_instance(stack)
        before_files = {n: await attached(stack, n) for n in approvals.values() if n in saved}
        proc = stack.processes["extractor"]
        stack.kill("extractor")
        proc.env["DINGDEE_GROUP_ID"] = "dingdee-extractor-again"
        stack.start_service("extractor")
        await stack.wait_alive("extractor")
        pattern = r'dingdee_writebacks_total\{[^}]*result="duplicate"\}'

        async def reread() -> bool:
            try:
                return await metric(stack, "extractor", pattern) >= len(approvals)
            except OSError:
                return False

        await poll_until(reread, timeout=120, what="every result read again")
        await asyncio.sleep(5)  # the loader's checks of the re-published files
        assert await comments_by_instance(stack) == before_comments
        for number, files in before_files.items():
            assert await attached(stack, number) == files, number
        assert (
            Counter(b["number"] for b in await stack.kingdee_bills(FORM)).most_common(1)[0][1] == 1
        )
