"""Reconciliation's Kingdee reader against the Kingdee sandbox over real HTTP (signature auth)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dingdee_dev.procs import ManagedProcess
from dingdee_loader.settings import KingdeeSettings
from dingdee_ops.reconcile.readers import KingdeeReader

pytestmark = pytest.mark.integration

DEMO = {
    "acct_id": "5db25ac8d2b819",
    "username": "webapi",
    "app_id": "204399_72epSbtEQMC92Vwt2d3LRa9LRqSc1tqJ",
    "app_secret": "fb7d46647ac346dbb5fcd45b65512a45",
    "auth_mode": "signature",
}


@pytest.fixture
async def kingdee_url(tmp_path: Path) -> AsyncIterator[str]:
    port_file = tmp_path / "kingdee.port"
    proc = ManagedProcess(
        "sandbox-kingdee",
        [
            sys.executable,
            "-m",
            "dingdee_sandbox.kingdee",
            "--port",
            "0",
            "--port-file",
            str(port_file),
        ],
        log_path=tmp_path / "kingdee.log",
    )
    proc.start()
    try:
        for _ in range(300):
            if port_file.exists() and port_file.read_text().strip():
                break
            assert proc.alive, proc.tail()
            await asyncio.sleep(0.1)
        yield f"http://127.0.0.1:{int(port_file.read_text().strip())}/k3cloud"
    finally:
        proc.stop()


async def test_counts_existing_bill_numbers(kingdee_url: str) -> None:
    from dingdee_sandbox.demo_org import DEPARTMENTS

    seeded = [d.kingdee_number for d in DEPARTMENTS[:3]]
    reader = KingdeeReader(KingdeeSettings.model_validate({**DEMO, "server_url": kingdee_url}))
    try:
        found = await reader.count_numbers("BD_Department", "FNumber", [*seeded, "NOPE-404"])
    finally:
        await reader.aclose()
    assert dict(found) == dict.fromkeys(seeded, 1)


async def test_rejected_credentials_are_fatal(kingdee_url: str) -> None:
    from dingdee_common.errors import FatalError

    reader = KingdeeReader(
        KingdeeSettings.model_validate({**DEMO, "server_url": kingdee_url, "app_secret": "0" * 32})
    )
    try:
        with pytest.raises(FatalError):
            await reader.count_numbers("BD_Department", "FNumber", ["X"])
    finally:
        await reader.aclose()
