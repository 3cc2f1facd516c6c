"""SIGKILL every service mid-run, restart it: the Kingdee sandbox still ends with the exact set.

Kills happen while records are in flight (after the first bills arrive, before the last), so
offsets, checkpoints and Kingdee saves are interrupted at arbitrary points.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from dingdee_dev.stack import Stack, StackConfig
from dingdee_dev.watch import expected_bills
from tests.helpers import demo_flows_file
from tests.integration.test_pipeline_e2e import bill_numbers, loaded_count, wait_loaded

pytestmark = [pytest.mark.fault, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


async def test_sigkill_each_service_mid_run_loses_and_duplicates_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    rng = random.Random(20261128)
    config = StackConfig(
        workdir=tmp_path,
        flows_file=demo_flows_file(),
        demo=400,
        seed=5,
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"kill{tmp_path.name[-6:]}.",
        # slow Kingdee down so the kills land while bills are still being written
        kingdee_args=("--latency-package-seconds", "0.03"),
    )
    async with Stack(config) as stack:
        expectation = await expected_bills(stack)

        await wait_loaded(stack, expectation, at_least=1, timeout=180, what="the first bills")
        at_kill: list[int] = []
        for victim in ("loader", "extractor", "transformer", "loader"):
            await asyncio.sleep(rng.uniform(0.2, 2.0))
            at_kill.append(await loaded_count(stack, expectation))
            stack.kill(victim)
            await asyncio.sleep(rng.uniform(0.0, 1.0))
            stack.start_service(victim)
            await stack.wait_alive(victim)

        await wait_loaded(
            stack, expectation, at_least=expectation.total, timeout=300, what="every bill"
        )
        got = await bill_numbers(stack, expectation)
        killed = {name: proc.starts - 1 for name, proc in stack.processes.items()}

    assert at_kill[0] < expectation.total, "the first kill must land mid-run"
    assert killed["loader"] == 2 and killed["transformer"] == 1 and killed["extractor"] == 1
    for form, expected in expectation.by_form.items():
        assert set(got[form]) == expected, f"{form}: missing or extra bills after SIGKILLs"
        assert all(c == 1 for c in got[form].values()), f"{form}: a bill was created twice"
