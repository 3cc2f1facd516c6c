"""The extractor's run: a task that raises (here the follow-up consumer) is a crash, not a stop.

The service's parts are fakes (no broker, no DingTalk); ``runner.run`` itself, its settings from
the environment, its logging and its ops server are real.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from dingdee_extractor import runner

FLOWS = Path(__file__).resolve().parents[3] / "config" / "flows.yaml"


class _Producer:
    def __init__(self) -> None:
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True


class _UntilStop:
    """An extractor part that runs until ``stop`` (the poll loops, the contact sync)."""

    def __init__(self, *_: Any) -> None:
        self.contact_hook: Any = None
        self.ended_by_stop = False
        self.outage = self  # the app's OutageWatch: the follow-ups read ``behind`` from it

    def behind(self, *_: Any) -> None:
        pass

    async def setup(self) -> None:
        pass

    def on_event(self, *_: Any) -> None:
        pass

    async def run(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.ended_by_stop = True


class _BrokenFollowups:
    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.sleep(0.01)
        raise RuntimeError("follow-up consumer broke")


@pytest.fixture
def logs_restored() -> Iterator[None]:
    """``run`` configures structlog and the root logger on the captured stderr: undo it after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


async def test_a_crashing_follow_up_task_is_logged_as_a_crash_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], logs_restored: None
) -> None:
    monkeypatch.setenv("DINGDEE_DINGTALK__APPS", '{"main": {"app_key": "k", "app_secret": "s"}}')
    monkeypatch.setenv("DINGDEE_FLOWS_FILE", str(FLOWS))
    monkeypatch.setenv("DINGDEE_HTTP__PORT", "0")
    monkeypatch.setenv("DINGDEE_TELEMETRY__LOG_FORMAT", "json")
    producer = _Producer()
    parts: list[_UntilStop] = []

    def part(*args: Any) -> _UntilStop:
        parts.append(_UntilStop(*args))
        return parts[-1]

    async def no_check(*_: Any) -> None:
        pass

    async def followups(*_: Any) -> _BrokenFollowups:
        return _BrokenFollowups()

    monkeypatch.setattr(runner, "startup_check", no_check)
    monkeypatch.setattr(runner, "make_producer", lambda _: producer)
    monkeypatch.setattr(runner, "install_stop_handlers", lambda _: None)
    monkeypatch.setattr(runner, "ExtractorApp", part)
    monkeypatch.setattr(runner, "ContactSync", part)
    monkeypatch.setattr(runner, "build_followups", followups)

    code = await runner.run()

    assert code == 1
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    crashed = [e for e in events if e["event"] == "extractor.crashed"]
    assert crashed, events
    assert crashed[0]["error_type"] == "RuntimeError"
    assert "follow-up consumer broke" in crashed[0]["exception"]
    stopped = [e for e in events if e["event"] == "extractor.stopped"]
    assert [e["exit_code"] for e in stopped] == [1]
    assert events.index(crashed[0]) < events.index(stopped[0])
    assert producer.started and producer.stopped
    await asyncio.sleep(0)  # the poll loops and the contact sync see ``stop``
    assert len(parts) == 2 and all(p.ended_by_stop for p in parts)
