"""Start-up and credential failures: a bad setting exits 2 naming it; credentials Kingdee rejects
exit 1 naming the settings to fix, without dead-lettering the bill that hit them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dingdee_common.procs import ManagedProcess
from dingdee_common.settings import KafkaSettings
from tests.helpers import poll_until
from tests.integration.test_loader_service import (
    Sandbox,
    dead_letters,
    loader_process,
    make_bills,
    produce,
    sandbox,
)

pytestmark = pytest.mark.integration
__all__ = ["sandbox"]


async def test_missing_server_url_exits_2_naming_the_setting(tmp_path: Path) -> None:
    log = tmp_path / "loader.log"
    proc = ManagedProcess(
        "loader",
        [sys.executable, "-m", "dingdee_loader"],
        env={"DINGDEE_KINGDEE__ACCT_ID": "a", "DINGDEE_KINGDEE__USERNAME": "u"},
        log_path=log,
    )
    proc.start()
    assert proc.proc is not None
    assert proc.proc.wait(timeout=30) == 2
    assert "DINGDEE_KINGDEE__SERVER_URL" in log.read_text()


async def test_rejected_credentials_exit_1_without_draining(
    kafka: KafkaSettings, sandbox: Sandbox, group_id: str, tmp_path: Path
) -> None:
    await produce(kafka, make_bills(3, 0.0, seed=61).records)
    log = tmp_path / "loader.log"
    proc, _ = loader_process(
        kafka, sandbox.url, group_id, log, DINGDEE_KINGDEE__APP_SECRET="0" * 32
    )
    proc.start()
    await poll_until(lambda: not proc.alive, timeout=60, what="the loader to exit")
    assert proc.proc is not None and proc.proc.returncode == 1, proc.tail()
    text = log.read_text()
    (fatal,) = [line for line in text.splitlines() if '"loader.fatal"' in line]
    assert "Kingdee rejected the credentials" in fatal and "__APP_SECRET" in fatal
    assert "0" * 32 not in text, "no secret in the logs"
    assert sandbox.numbers() == []
    assert await dead_letters(kafka) == {}
