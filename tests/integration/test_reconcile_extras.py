"""`dingdee reconcile` reports extra bills as well as missing ones, and fails on either (DESIGN §5).

The DingTalk and Kingdee sandboxes run as processes; Kingdee's bills are written and deleted with
the official Kingdee SDK, as a finance user's other tools would.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from k3cloud_webapi_sdk.main import K3CloudApiSdk

from dingdee_dev.stack import Stack, StackConfig
from dingdee_dev.watch import PETTY_CASH_FORM, expected_bills
from dingdee_sandbox.kingdee.demo import expense_model
from tests.helpers import demo_flows_file
from tests.integration.test_reconcile_stack import reconcile_env, run_cli

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
HAND_MADE = "BYJ-HAND\x1b[2J-1"  # typed into Kingdee by hand, with an escape sequence in it


async def kingdee(env: dict[str, str], method: str, *args: Any) -> dict[str, Any]:
    """One official-SDK call with the loader's credentials; its ``ResponseStatus``."""
    url = env["DINGDEE_KINGDEE__SERVER_URL"]
    sdk = K3CloudApiSdk(url)
    sdk.InitConfig(
        env["DINGDEE_KINGDEE__ACCT_ID"],
        env["DINGDEE_KINGDEE__USERNAME"],
        env["DINGDEE_KINGDEE__APP_ID"],
        env["DINGDEE_KINGDEE__APP_SECRET"],
        url,
    )
    answer = json.loads(await asyncio.to_thread(getattr(sdk, method), PETTY_CASH_FORM, *args))
    status: dict[str, Any] = answer["Result"]["ResponseStatus"]
    assert status["IsSuccess"], status
    return status


async def test_extra_and_missing_bills_each_fail_reconciliation(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    config = StackConfig(
        workdir=tmp_path,
        flows_file=demo_flows_file(),
        demo=15,
        seed=5,
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"rx{tmp_path.name[-6:]}.",
        services=(),
    )
    end = datetime.now(UTC) - timedelta(seconds=1)
    start = end - timedelta(days=300)
    async with Stack(config) as stack:
        petty = sorted((await expected_bills(stack)).by_form[PETTY_CASH_FORM])
        assert petty, "the demo must approve some petty-cash approvals"
        env = reconcile_env(stack)
        rng = random.Random(5)
        models = [expense_model(n, rng) for n in [*petty, HAND_MADE, "OTHER-FLOW-1"]]
        await kingdee(env, "BatchSave", {"Model": models})

        code, out = await run_cli(env, start, end)
        assert code == 1, out
        assert RAW_CONTROL.search(out) is None, out
        assert "多余 单号 BYJ-HAND\\x1b[2J-1 ×1" in out and "没有对应的已审批钉钉实例" in out
        assert "OTHER-FLOW-1" not in out, "a number outside the flow's pattern is not its business"
        assert "存在多余的单据" in out and "缺失 实例" not in out

        await kingdee(env, "Delete", {"Numbers": [HAND_MADE]})
        code, out = await run_cli(env, start, end)
        assert code == 0, out
        assert "无缺失，无多余" in out

        await kingdee(env, "Delete", {"Numbers": [petty[0]]})
        code, out = await run_cli(env, start, end)
    assert code == 1, out
    assert "缺失 实例 " in out and f"单号 {petty[0]}" in out
    assert "存在缺失的单据" in out and "多余 单号" not in out
