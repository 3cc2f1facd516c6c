"""`dingdee reconcile` against the sandboxes.

Before the pipeline ran, every approved petty-cash approval is missing (exit 1); after it ran, each
one is matched by exactly its Kingdee bill (exit 0).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from asyncio.subprocess import PIPE, STDOUT
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dingdee_dev.stack import SERVICES, Stack, StackConfig
from dingdee_dev.watch import expected_bills
from dingdee_ops.reconcile.engine import ReconcileSettings, reconcile
from tests.helpers import demo_flows_file, poll_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
FLOW = "petty-cash"


def reconcile_env(stack: Stack) -> dict[str, str]:
    """The loader's and the extractor's settings: reconcile reads the same variables."""
    env = {**stack.service_env("extractor"), **stack.service_env("loader")}
    return {k: v for k, v in env.items() if k.startswith("DINGDEE_")}


async def run_cli(
    env: dict[str, str], start: datetime, end: datetime, *extra: str
) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from dingdee_ops.cli.main import main; main()", "reconcile",
        "--flow", FLOW, "--from", start.isoformat(), "--to", end.isoformat(), *extra,
        env={**os.environ, **env, "COLUMNS": "200"}, stdout=PIPE, stderr=STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=180)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_reconcile_before_and_after_the_pipeline(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    config = StackConfig(
        workdir=tmp_path,
        flows_file=demo_flows_file(),
        demo=60,
        seed=13,
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"rc{tmp_path.name[-6:]}.",
        services=(),
    )
    async with Stack(config) as stack:
        expectation = await expected_bills(stack)
        petty = {
            k for form, keys in expectation.by_form.items() for k in keys if k.startswith("BYJ")
        }
        assert petty, "the demo must approve some petty-cash approvals"
        env = reconcile_env(stack)
        end = datetime.now(UTC) - timedelta(seconds=1)
        start = end - timedelta(days=300)

        code, out = await run_cli(env, start, end)
        assert code == 1, out
        assert "存在缺失的单据" in out

        for name in SERVICES:
            stack.start_service(name)

        async def all_loaded() -> bool:
            bills = {
                str(b["number"])
                for form in expectation.by_form
                for b in await stack.kingdee_bills(form)
            }
            return petty <= bills

        await poll_until(
            all_loaded, timeout=240, what="every approved petty-cash approval as a bill"
        )
        settings = ReconcileSettings.model_validate(
            {
                "kafka": stack.kafka,
                "flows_file": config.flows_file,
                "dingtalk": {"base_url": stack.dingtalk_url, "apps": _apps(env)},
                "kingdee": {k.removeprefix("DINGDEE_KINGDEE__").lower(): v for k, v in env.items()
                            if k.startswith("DINGDEE_KINGDEE__")},
            }
        )  # fmt: skip
        report = await reconcile(settings, FLOW, start, end)
        code, out = await run_cli(env, start, end)
        json_code, json_out = await run_cli(env, start, end, "--json")

    assert report.ok and not report.missing, report.missing
    assert {e.bill_key for e in report.matched} == petty
    assert report.extra == []
    assert code == 0, out
    assert "无缺失" in out
    summary = json.loads(json_out)  # what the console's "last reconcile" shows
    assert json_code == 0 and summary["ok"] is True and summary["flow"] == FLOW
    assert summary["counts"] == report.counts()


def _apps(env: dict[str, str]) -> object:
    return json.loads(env["DINGDEE_DINGTALK__APPS"])
