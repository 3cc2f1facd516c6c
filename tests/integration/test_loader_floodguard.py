"""Flood guard (DESIGN §4): when every bill is rejected the loader stops instead of draining.

Also: the loader in session mode (ValidateUser) loads bills like in signature mode.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from dingdee_common.settings import KafkaSettings
from dingdee_dev.procs import wait_http_ok
from tests.helpers import poll_until, wait_not_ready
from tests.integration.test_loader_service import (
    Sandbox,
    committed_to_end,
    dead_letters,
    loader_process,
    make_bills,
    produce,
    results_by_key,
    sandbox,
)

pytestmark = pytest.mark.integration
__all__ = ["sandbox"]  # the fixture, re-used


async def test_flood_guard_stops_consuming_and_turns_not_ready(
    kafka: KafkaSettings, sandbox: Sandbox, group_id: str, tmp_path: Path
) -> None:
    """120 bills Kingdee rejects, trip at 30 in a row: 30 dead letters, /readyz 503, no commit."""
    bills = make_bills(120, 1.0, seed=31)
    last = await produce(kafka, bills.records)
    proc, port = loader_process(
        kafka,
        sandbox.url,
        group_id,
        tmp_path / "loader.log",
        DINGDEE_KINGDEE__CONCURRENCY="1",
        DINGDEE_BATCH_MAX_RECORDS="10",
        DINGDEE_FLOOD_GUARD__MAX_CONSECUTIVE="30",
        DINGDEE_FLOOD_GUARD__MIN_RECORDS="1000",
    )
    proc.start()
    try:
        await wait_http_ok(f"http://127.0.0.1:{port}/healthz", timeout=30, process=proc)
        await wait_not_ready(port, "flood guard")
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        assert 'dingdee_flood_guard_tripped{stage="loader"} 1.0' in metrics
        assert proc.alive, "a tripped loader stays up (not ready) until an operator restarts it"
    finally:
        assert proc.stop() == 0, proc.tail()
    assert len(await dead_letters(kafka)) == 30
    assert len(await results_by_key(kafka)) == 30
    assert not await committed_to_end(kafka, group_id, last)


async def test_session_mode_loads_like_signature_mode(
    kafka: KafkaSettings, sandbox: Sandbox, group_id: str, tmp_path: Path
) -> None:
    """AUTH_MODE=session: ValidateUser per lane, bills saved once, offsets committed."""
    bills = make_bills(40, 0.0, seed=32)
    last = await produce(kafka, bills.records)
    proc, port = loader_process(
        kafka,
        sandbox.url,
        group_id,
        tmp_path / "loader.log",
        DINGDEE_KINGDEE__AUTH_MODE="session",
        DINGDEE_KINGDEE__PASSWORD="demo-password",
        DINGDEE_KINGDEE__APP_ID="",
        DINGDEE_KINGDEE__APP_SECRET="",
        DINGDEE_BATCH_MAX_RECORDS="10",
    )
    proc.start()
    try:
        await wait_http_ok(f"http://127.0.0.1:{port}/healthz", timeout=30, process=proc)
        await poll_until(
            lambda: committed_to_end(kafka, group_id, last), timeout=60, what="offsets committed"
        )
    finally:
        assert proc.stop() == 0, proc.tail()
    assert sorted(sandbox.numbers()) == sorted(bills.valid)
    assert sandbox.state.stats["calls_validateuser"] >= 1
    assert sandbox.state.stats["signature_rejected"] == 0
