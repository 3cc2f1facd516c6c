"""A bill whose record batch failed is sent again on its own; the failure is logged once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from dingdee_common.errors import FatalError
from dingdee_common.observability.server import Health
from dingdee_transformer.app import TransformerApp
from dingdee_transformer.flowspec import load_compiled
from dingdee_transformer.metrics import TransformerMetrics
from dingdee_transformer.pipeline import Emit, Seen
from dingdee_transformer.settings import TransformerSettings

ROOT = Path(__file__).resolve().parents[3]


def _service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TransformerApp:
    monkeypatch.chdir(tmp_path)  # faust's data directory
    settings = TransformerSettings(
        flows_file=ROOT / "config" / "flows.yaml",
        retry={"max_attempts": 2, "initial_backoff_seconds": 0.01, "max_backoff_seconds": 0.01},
    )
    return TransformerApp(
        settings,
        load_compiled(settings.flows_file),
        TransformerMetrics.create(CollectorRegistry()),
        Health(stale_after=60),
    )


def _emit(n: int) -> Emit:
    return Emit("petty-cash", f"pi-{n}", f"BYJ{n}".encode(), b"{}", [], Seen(("fp",), f"BYJ{n}"))


async def test_a_failed_batch_is_resent_bill_by_bill_and_logged_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = _service(tmp_path, monkeypatch)
    resent: list[bytes] = []

    async def send_and_wait(topic: str, key: bytes, *_: Any) -> None:
        resent.append(key)

    monkeypatch.setattr(service.app.producer, "send_and_wait", send_and_wait)
    batch: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    batch.set_exception(ConnectionError("broker gone"))
    failed: set[asyncio.Future[Any]] = set()
    with capture_logs() as logs:
        for n in range(3):
            await service._confirm(_emit(n), batch, failed)
    assert resent == [b"BYJ0", b"BYJ1", b"BYJ2"]
    assert [e["event"] for e in logs] == ["transformer.bill.send_failed"]


async def test_a_bill_that_cannot_be_resent_is_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = _service(tmp_path, monkeypatch)
    attempts: list[bytes] = []

    async def send_and_wait(topic: str, key: bytes, *_: Any) -> None:
        attempts.append(key)
        raise ConnectionError("still gone")

    monkeypatch.setattr(service.app.producer, "send_and_wait", send_and_wait)
    batch: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    batch.set_exception(ConnectionError("broker gone"))
    with pytest.raises(FatalError, match="could not publish"):
        await service._confirm(_emit(7), batch, set())
    assert attempts == [b"BYJ7", b"BYJ7"]
