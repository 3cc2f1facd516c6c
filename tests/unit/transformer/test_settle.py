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


def _failing_producer(
    service: TransformerApp, monkeypatch: pytest.MonkeyPatch, *, resends_fail: bool
) -> list[bytes]:
    """The keys faust's producer is asked to resend (each resend fails when ``resends_fail``)."""
    sent: list[bytes] = []

    async def send_and_wait(topic: str, key: bytes, *_: Any) -> None:
        sent.append(key)
        if resends_fail:
            raise ConnectionError("still gone")

    monkeypatch.setattr(service.app.producer, "send_and_wait", send_and_wait)
    return sent


def _failed_batch() -> asyncio.Future[Any]:
    batch: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    batch.set_exception(ConnectionError("broker gone"))
    return batch


async def test_a_failed_batch_is_resent_bill_by_bill_and_logged_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = _service(tmp_path, monkeypatch)
    resent = _failing_producer(service, monkeypatch, resends_fail=False)
    batch, failed = _failed_batch(), set[asyncio.Future[Any]]()
    with capture_logs() as logs:
        for n in range(3):
            await service.batches._confirm(_emit(n), batch, failed)
    assert resent == [b"BYJ0", b"BYJ1", b"BYJ2"]
    assert [e["event"] for e in logs] == ["transformer.bill.send_failed"]


async def test_a_bill_that_cannot_be_resent_is_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = _service(tmp_path, monkeypatch)
    attempts = _failing_producer(service, monkeypatch, resends_fail=True)
    with pytest.raises(FatalError, match="could not publish"):
        await service.batches._confirm(_emit(7), _failed_batch(), set())
    assert attempts == [b"BYJ7", b"BYJ7"]
