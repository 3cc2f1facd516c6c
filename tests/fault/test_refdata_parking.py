"""Parked records under faults (issue #14): a SIGKILL of the transformer while records are
parked, and a reference that stays missing past the (short, configured) parking limit.

One stack (real broker, both sandboxes, three services; every lookup live). Two new hires exist
only in DingTalk; their three approved claims park. The transformer is SIGKILLed; the first
hire is added in Kingdee while it is down; after the restart their two claims load, once each.
The second hire's claim stays parked until ``DINGDEE_PARKING__LIMIT_SECONDS`` and is
dead-lettered with the actionable reason; once the employee exists, ``dingdee dlq replay``
makes exactly one bill of it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from dingdee_common.kafka.reading import read_topic
from dingdee_dev.stack import Stack, StackConfig
from dingdee_sandbox.demo_org import PROCESS_CODES
from tests.helpers import dingdee, poll_until
from tests.integration.test_refdata_e2e import (
    FAST,
    PETTY_FORM,
    approve_new,
    bills,
    call,
    live_only_flows,
    parked_keys,
    wait_bill,
)

pytestmark = [pytest.mark.fault, pytest.mark.slow]

LIMIT = 75  # seconds a record may stay parked in this test


async def hire(stack: Stack, userid: str, name: str, job_number: str) -> None:
    user = {"userid": userid, "name": name, "dept_ids": [582976342], "job_number": job_number}
    await call(stack.dingtalk_url, "POST", "/_sandbox/contacts/users", user)


async def test_parked_records_survive_a_sigkill_and_expire_into_a_replayable_dead_letter(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    config = StackConfig(
        workdir=tmp_path,
        flows_file=live_only_flows(tmp_path),
        demo=4,
        seed=9,
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"park{tmp_path.name[-6:]}.",
        env={**FAST, "DINGDEE_PARKING__LIMIT_SECONDS": str(LIMIT)},
    )
    async with Stack(config) as stack:
        await hire(stack, "0999000000000011", "赵六", "B2001")
        await hire(stack, "0999000000000012", "钱七", "B2002")
        petty = PROCESS_CODES["petty-cash"]
        first = [
            await approve_new(stack, petty, originator_userid="0999000000000011") for _ in range(2)
        ]
        second = await approve_new(stack, petty, originator_userid="0999000000000012")
        ids = {c["id"] for c in [*first, second]}

        async def all_parked() -> bool:
            return ids <= await parked_keys(stack)

        await poll_until(all_parked, timeout=150, what="the three claims parked")

        stack.kill("transformer")
        await call(
            stack.kingdee_url, "POST", "/_sandbox/basedata/employees",
            {"number": "B2001", "name": "赵六"},
        )  # fmt: skip
        stack.start_service("transformer")
        for claim in first:
            await wait_bill(
                stack, PETTY_FORM, "BYJ" + claim["business_id"], "a claim after restart"
            )
        assert second["id"] in await parked_keys(stack), "the other hire's claim still waits"

        async def dead_lettered() -> bool:
            return any(
                r.key == second["id"].encode()
                for r in await read_topic(stack.kafka, stack.topics.dlq("transformer"))
            )

        await poll_until(dead_lettered, timeout=LIMIT + 60, what="the expired claim's dead letter")
        [letter] = [
            r
            for r in await read_topic(stack.kafka, stack.topics.dlq("transformer"))
            if r.key == second["id"].encode()
        ]
        message = dict(letter.headers)["dlq-error-message"].decode()
        assert "员工 0999000000000012 (钱七, 工号 B2002) is not in Kingdee BD_Empinfo" in message
        assert "create the 员工, it will load by itself within" in message
        assert second["id"] not in await parked_keys(stack)

        await call(
            stack.kingdee_url, "POST", "/_sandbox/basedata/employees",
            {"number": "B2002", "name": "钱七"},
        )  # fmt: skip

        async def employee_known() -> bool:
            rows = await read_topic(stack.kafka, stack.topics.refdata("kingdee_employees"))
            return any(r.key == b"B2002" for r in rows)

        await poll_until(employee_known, timeout=60, what="the employee in the reference topic")
        code, out = await dingdee(
            stack.kafka, "dlq", "replay", "--stage", "transformer", "--execute"
        )
        assert code == 0, out
        await wait_bill(stack, PETTY_FORM, "BYJ" + second["business_id"], "the replayed claim")
        got = await bills(stack)

    mine = {"BYJ" + c["business_id"] for c in [*first, second]}
    assert mine <= set(got[PETTY_FORM])
    assert not {n: c for n, c in got[PETTY_FORM].items() if c > 1}, Counter(got[PETTY_FORM])
