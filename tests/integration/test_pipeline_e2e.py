"""End to end: N approvals in the DingTalk sandbox → exactly the approved ones as Kingdee bills.

The broker, both sandboxes and the three services run as separate processes (``Stack``), exactly
as ``make run`` starts them. Sets of bill numbers are compared, so a dropped or a duplicated record
fails the test.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from dingdee_dev.stack import Stack, StackConfig
from dingdee_dev.watch import Expectation, expected_bills
from tests.helpers import demo_flows_file, poll_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


async def bill_numbers(stack: Stack, expectation: Expectation) -> dict[str, Counter[str]]:
    """Every bill number per form with its count (seeded base departments left out)."""
    from dingdee_sandbox.demo_org import DEPARTMENTS

    seeded = {d.kingdee_number for d in DEPARTMENTS}
    return {
        form: Counter(
            str(b["number"]) for b in await stack.kingdee_bills(form) if b["number"] not in seeded
        )
        for form in expectation.by_form
    }


async def loaded_count(stack: Stack, expectation: Expectation) -> int:
    """How many of the expected bills are in Kingdee so far."""
    got = await bill_numbers(stack, expectation)
    return sum(len(set(got[f]) & expectation.by_form[f]) for f in expectation.by_form)


async def wait_loaded(
    stack: Stack, expectation: Expectation, *, at_least: int, timeout: float, what: str
) -> None:
    """Wait until at least ``at_least`` of the expected bills are in Kingdee."""

    async def enough() -> bool:
        return await loaded_count(stack, expectation) >= at_least

    await poll_until(enough, timeout=timeout, what=what)


async def test_every_approved_demo_approval_becomes_exactly_one_bill(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    config = StackConfig(
        workdir=tmp_path,
        flows_file=demo_flows_file(),
        demo=120,
        seed=11,
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"e2e{tmp_path.name[-6:]}.",
    )
    async with Stack(config) as stack:
        expectation = await expected_bills(stack)
        assert expectation.total > 100, "the demo must approve most of its approvals"

        async def all_loaded() -> bool:
            got = await bill_numbers(stack, expectation)
            return all(set(got[f]) >= expectation.by_form[f] for f in expectation.by_form)

        await poll_until(all_loaded, timeout=240, what="every approved approval as a bill")
        counts = await stack.topic_counts()
        got = await bill_numbers(stack, expectation)

    for form, expected in expectation.by_form.items():
        assert set(got[form]) == expected, f"{form}: missing or extra bills"
        duplicates = {n: c for n, c in got[form].items() if c > 1}
        assert not duplicates, f"{form}: bills created twice: {duplicates}"
    assert counts["dlq.loader"] == 0
    # the progress counts are exact (Tansu lists an end short of a multi-record last batch): every
    # loaded bill went through bills.ready first
    assert counts["transformed"] >= expectation.total, counts
