"""The broker frozen (SIGSTOP) for 30 s mid-run: every service rides it out, the set stays exact.

The test runs its own embedded broker (the session broker is shared by other tests and must not
freeze). While the broker is stopped its sockets stay open but nothing answers: requests time out,
consumer sessions lapse and rebalance once it is back, producers retry their batches.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from dingdee_common.broker import ENV_BOOTSTRAP
from dingdee_common.devrun import expected_bills
from dingdee_common.devstack import SERVICES, Stack, StackConfig
from tests.helpers import poll_until
from tests.integration.test_pipeline_e2e import bill_numbers, loaded_count

pytestmark = [
    pytest.mark.fault,
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(os.environ.get(ENV_BOOTSTRAP)), reason="freezing needs the embedded broker process"
    ),
]

ROOT = Path(__file__).resolve().parents[2]
FREEZE_SECONDS = 30.0


async def test_broker_frozen_for_30s_mid_run_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    config = StackConfig(
        workdir=tmp_path,
        flows_file=ROOT / "config" / "flows.yaml",
        demo=300,
        seed=13,
        kafka_bootstrap=None,  # a private broker: freezing it must not touch other tests
        topic_prefix="freeze.",
        # slow Kingdee down so the freeze lands while bills are still being written
        kingdee_args=("--latency-package-seconds", "0.03"),
    )
    async with Stack(config) as stack:
        assert stack.broker is not None and stack.broker.pid is not None
        expectation = await expected_bills(stack)

        async def loaded() -> int:
            return await loaded_count(stack, expectation)

        async def some_loaded() -> bool:
            return await loaded() > 0

        await poll_until(some_loaded, timeout=180, what="the first bills in Kingdee")
        at_freeze = await loaded()
        os.killpg(stack.broker.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(FREEZE_SECONDS)
        finally:
            os.killpg(stack.broker.pid, signal.SIGCONT)
        exited = {
            n: stack.processes[n].proc.returncode for n in SERVICES if not stack.processes[n].alive
        }  # type: ignore[union-attr]
        assert not exited, f"services exited during the freeze: {exited}"

        async def all_loaded() -> bool:
            return await loaded() >= expectation.total

        await poll_until(all_loaded, timeout=300, what="every approved approval as a bill")
        await asyncio.sleep(3.0)  # a late duplicate would show up here
        got = await bill_numbers(stack, expectation)
        counts = await stack.topic_counts()
        alive = {name: stack.processes[name].alive for name in SERVICES}
        starts = {name: stack.processes[name].starts for name in SERVICES}

    assert at_freeze < expectation.total, "the freeze must land mid-run"
    assert alive == dict.fromkeys(SERVICES, True), "every service is still running"
    assert starts == dict.fromkeys(SERVICES, 1), "no service was restarted"
    for form, expected in expectation.by_form.items():
        assert set(got[form]) == expected, f"{form}: missing or extra bills after the freeze"
        assert all(c == 1 for c in got[form].values()), f"{form}: a bill was created twice"
    dead = {k: v for k, v in counts.items() if k.startswith("dlq.")}
    assert dead == dict.fromkeys(dead, 0), f"dead letters after a broker freeze: {dead}"
