"""The console's state: settings, the compiled flows, the latest journal and service states,
refreshed in the background so that a page never waits for Kafka."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter, Gauge

from dingdee_common.errors import FatalError
from dingdee_common.flows import FlowEntry, load_flows
from dingdee_common.kafka.topics import Topics
from dingdee_common.observability.logging import get_logger
from dingdee_common.observability.server import Health
from dingdee_ops.console.journal import Journal, read_journal
from dingdee_ops.console.picture import FlowPicture, picture
from dingdee_ops.console.settings import ConsoleSettings
from dingdee_transformer.flowspec import CompiledFlow, compile_flows

__all__ = ["ConsoleMetrics", "ConsoleState", "Report"]

log = get_logger(__name__)


@dataclass(frozen=True)
class ConsoleMetrics:
    """The console's own metrics on its ops port (docs/operating.md "Console")."""

    requests: Counter
    replays: Counter
    refreshed: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ConsoleMetrics:
        return cls(
            requests=Counter(
                "dingdee_console_requests",
                "Console HTTP answers by route and status code.",
                ["route", "code"],
                registry=registry,
            ),
            replays=Counter(
                "dingdee_console_replays",
                "Replay runs started from the console, by mode (dry_run, execute).",
                ["mode"],
                registry=registry,
            ),
            refreshed=Gauge(
                "dingdee_console_last_refresh_timestamp_seconds",
                "When the console last read the pipeline topics successfully.",
                registry=registry,
            ),
        )


@dataclass(frozen=True)
class Report:
    """The last ``doctor`` or ``reconcile`` result, when its ``--json`` output file is set."""

    title: str
    missing: str | None = None
    ok: bool = False
    summary: str = ""
    when: str = ""


def _report(title: str, path: Path | None) -> Report:
    if path is None:
        return Report(title, missing="未配置 not configured")
    try:
        data: Any = orjson.loads(path.read_bytes())
        when = datetime.fromtimestamp(path.stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (OSError, orjson.JSONDecodeError) as exc:
        return Report(title, missing=f"无结果 no result ({type(exc).__name__})")
    if not isinstance(data, dict):
        return Report(title, missing="无法读取 unreadable report")
    return Report(title, ok=data.get("ok") is True, summary=_summary(data), when=when)


def _summary(data: dict[str, Any]) -> str:
    """A doctor report's check levels, or a reconcile report's flow, period and counts."""
    counts = data.get("counts")
    if isinstance(counts, dict):
        period = f"{data.get('period_from', '?')} ~ {data.get('period_to', '?')}"
        shown = ", ".join(f"{k} {v}" for k, v in counts.items())
        return f"{data.get('flow', '?')} {period}: {shown}"
    found = data.get("checks")
    checks: list[Any] = found if isinstance(found, list) else []
    levels = [c.get("level") for c in checks if isinstance(c, dict)]
    errors, warnings = levels.count("error"), levels.count("warning")
    return f"{len(levels)} checks, {errors} error(s), {warnings} warning(s)"


class ConsoleState:
    """Everything a page needs; :meth:`run` keeps ``journal`` and ``services`` fresh."""

    def __init__(self, settings: ConsoleSettings, registry: CollectorRegistry) -> None:
        self.settings = settings
        self.config = settings.console
        self.topics = Topics(settings.kafka.topic_prefix)
        flows_file = load_flows(settings.flows_file)
        self.flows: dict[str, CompiledFlow] = compile_flows(
            flows_file, source=str(settings.flows_file)
        )
        entries: dict[str, FlowEntry] = {e.id: e for e in flows_file.enabled()}
        self.pictures: dict[str, FlowPicture] = {
            fid: picture(flow, entries.get(fid)) for fid, flow in self.flows.items()
        }
        self.metrics = ConsoleMetrics.create(registry)
        self.health = Health(stale_after=max(120.0, self.config.refresh_seconds * 4))
        self.journal: Journal | None = None
        self.journal_error: str | None = None
        self.services: dict[str, str] = {}
        self._wake = asyncio.Event()

    def reports(self) -> list[Report]:
        return [
            _report("上次体检 Last doctor", self.config.doctor_report),
            _report("上次对账 Last reconcile", self.config.reconcile_report),
        ]

    async def refresh(self) -> None:
        """Read the topics and the services' readiness once; never raises for a broker outage."""
        try:
            self.journal = await read_journal(
                self.settings.kafka, self.topics, self.config.window_hours
            )
        except (FatalError, KafkaError, OSError, TimeoutError) as exc:
            self.journal_error = f"{type(exc).__name__}: {exc}"
            self.health.set_not_ready(f"kafka: {exc}")
            log.warning("console.refresh_failed", error=str(exc))
        else:
            self.journal_error = None
            self.health.set_ready()
            self.metrics.refreshed.set_to_current_time()
        self.services = await self._services()

    async def _services(self) -> dict[str, str]:
        out: dict[str, str] = {}
        async with httpx.AsyncClient(timeout=3.0) as client:
            for name, base in sorted(self.config.services.items()):
                try:
                    response = await client.get(f"{base.rstrip('/')}/readyz")
                except httpx.HTTPError as exc:
                    out[name] = f"not answering ({type(exc).__name__})"
                    continue
                code = response.status_code
                out[name] = "ready" if response.is_success else f"not ready ({code})"
        return out

    def wake(self) -> None:
        """Refresh now (after a replay), not at the next interval."""
        self._wake.set()

    async def run(self) -> None:
        """Refresh every ``refresh_seconds`` (or when woken) until cancelled."""
        while True:
            await self.refresh()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.refresh_seconds)
