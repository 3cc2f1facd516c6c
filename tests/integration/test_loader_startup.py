"""Start-up and credential failures: a bad setting exits 2 naming it; credentials Kingdee rejects
keep the loader up and not ready, naming the settings to fix, without touching a bill."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dingdee_common.settings import KafkaSettings
from dingdee_dev.procs import ManagedProcess, wait_http_ok
from tests.helpers import poll_until, wait_not_ready
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


async def test_rejected_credentials_wait_not_ready_without_draining(
    kafka: KafkaSettings, sandbox: Sandbox, group_id: str, tmp_path: Path
) -> None:
    """A secret Kingdee refuses is a configuration error: the loader stays up, not ready, says
    why on /readyz and in one log line, touches no bill; once Kingdee accepts it, it loads."""
    await produce(kafka, make_bills(3, 0.0, seed=61).records)
    log = tmp_path / "loader.log"
    proc, port = loader_process(
        kafka,
        sandbox.url,
        group_id,
        log,
        DINGDEE_KINGDEE__APP_SECRET="0" * 32,
        DINGDEE_KINGDEE__REFUSED_RETRY_SECONDS="0.5",
    )
    proc.start()
    try:
        await wait_http_ok(f"http://127.0.0.1:{port}/healthz", timeout=30, process=proc)
        await wait_not_ready(port, "__APP_SECRET", timeout=30)
        await poll_until(
            lambda: sandbox.state.stats["signature_rejected"] >= 4, timeout=30, what="retries"
        )
        assert proc.alive, proc.tail()
        text = log.read_text()
        (line,) = [x for x in text.splitlines() if '"loader.kingdee.refused"' in x]
        assert "Kingdee rejected the credentials" in line and "__APP_SECRET" in line
        assert "0" * 32 not in text, "no secret in the logs"
        assert sandbox.numbers() == []
        sandbox.state.update_config({"app_secret": "0" * 32})  # Kingdee now accepts it
        await poll_until(lambda: len(sandbox.numbers()) == 3, timeout=60, what="3 bills saved")
    finally:
        assert proc.stop() == 0, proc.tail()
    assert await dead_letters(kafka) == {}
