"""A flow poller's state: its checkpoint, open and emitted instances, and their persistence.

The poller is built in layers, each a class over the one before (DESIGN §11, "Unit seams"):
:class:`FlowState` (this module: state, checkpointing, rewinding on a broker failure),
:class:`~dingdee_extractor.listing.FlowListing` (metered ``listids`` calls and blame),
:class:`~dingdee_extractor.fetching.FlowFetching` (``get``, emit, the error → action map) and
:class:`~dingdee_extractor.poller.FlowPoller` (the cycle: windows, sweeps, re-checks).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from aiokafka.errors import KafkaError

from dingdee_common.contracts import Checkpoint
from dingdee_common.kafka.dlq import DeadLetterPublisher
from dingdee_common.settings import RetrySettings
from dingdee_extractor.dingtalk.client import IdPage
from dingdee_extractor.emitter import Emitter
from dingdee_extractor.flows import FlowSource
from dingdee_extractor.gapnet import Coverage
from dingdee_extractor.metrics import ExtractorMetrics
from dingdee_extractor.planning import DAY_MS
from dingdee_extractor.settings import EventsSettings, PollSettings

__all__ = ["DingTalkCalls", "FlowState"]


class DingTalkCalls(Protocol):
    """What the poller uses of :class:`~dingdee_extractor.dingtalk.client.DingTalkClient`."""

    async def listids(
        self, app: str, process_code: str, start_ms: int, end_ms: int, cursor: int
    ) -> IdPage: ...

    async def get(self, app: str, instance_id: str) -> dict[str, Any]: ...

    def answered_since(self, app: str, since: float) -> bool: ...


class FlowState:
    """Polls one flow; owns its checkpoint in memory and persists it after every acked step."""

    def __init__(
        self,
        source: FlowSource,
        checkpoint: Checkpoint | None,
        *,
        client: DingTalkCalls,
        emitter: Emitter,
        save: Callable[[Checkpoint], Awaitable[None]],
        dlq: DeadLetterPublisher,
        metrics: ExtractorMetrics,
        poll: PollSettings,
        retry: RetrySettings,
        concurrency: int = 8,
        clock: Callable[[], int] | None = None,
        until_ms: int | None = None,
        on_window: Callable[[int, int, int], None] | None = None,
        check_code: Callable[[FlowSource], Awaitable[str | None]] | None = None,
        coverage: Coverage | None = None,
        events: EventsSettings | None = None,
    ) -> None:
        self.source = source
        self._back_to(checkpoint or Checkpoint(flow=source.flow, watermark_ms=source.start_ms()))
        self._saved = self.cp  # the last checkpoint the broker acknowledged
        self._client = client
        self._emitter = emitter
        self._save = save
        self._dlq = dlq
        self._metrics = metrics
        self._poll = poll
        self._retry = retry
        self._clock = clock or (lambda: int(datetime.now(UTC).timestamp() * 1000))
        self._tz = ZoneInfo(source.timezone)
        self._concurrency = concurrency
        self._lock = asyncio.Lock()
        self._until_ms = until_ms
        self._on_window = on_window
        self._usage = self.cp.usage
        self._coverage = coverage  # events mode: list only what a Stream gap could have hidden
        self._events = events or EventsSettings()
        self._verify_now = False
        self._gaps_seen = 0  # of the coverage's closed gaps, those this flow has handled
        self._fallback_at = 0  # when a long open gap was last listed
        self.pace = 1.0  # poll interval / configured interval, set by the app's budget pacer
        self.calls = 0  # metered calls since this poller started (every attempt)
        self.terminals = 0
        self._check_code = check_code  # the doctor's form-schema check of the process_code
        self._code_checked_ms: int | None = None
        self.config_error: str | None = None  # a process_code DingTalk does not know

    @contextlib.contextmanager
    def _rewound_on_broker_failure(self) -> Iterator[None]:
        """On a Kafka error, forget everything since the last acknowledged checkpoint.

        Snapshots sent but not acknowledged may be lost, and an instance remembered as emitted
        would then never be fetched again: back at the checkpoint, the next cycle repeats the
        work (a snapshot may reach ``approvals.raw`` twice; the transformer's fingerprints drop
        the copy).
        """
        try:
            yield
        except KafkaError:
            self._back_to(self._saved)
            raise

    def _back_to(self, checkpoint: Checkpoint) -> None:
        """The state of ``checkpoint``: its watermark, open and emitted instances."""
        self.cp = checkpoint
        self._open = dict(checkpoint.open_instances)
        self._emitted = dict(checkpoint.emitted)

    def _is_new(self, instance_id: str) -> bool:
        return instance_id not in self._emitted and instance_id not in self._open

    # ---- checkpointing -----------------------------------------------------------------------

    def _prune(self, now: int) -> None:
        """Forget emitted instances no window or sweep will list again."""
        p = self._poll
        next_sweep_from = max(now - int(p.sweep_lookback_days * DAY_MS), self.cp.swept_until_ms)
        keep_after = (
            min(self.cp.watermark_ms - int(p.overlap_seconds * 1000), next_sweep_from) - DAY_MS
        )
        self._emitted = {k: v for k, v in self._emitted.items() if v.create_time_ms >= keep_after}

    async def _checkpoint(self, *, watermark: int) -> None:
        """Persist state; only called after every record it covers was acked."""
        self.cp = self.cp.model_copy(
            update={
                "watermark_ms": watermark,
                "open_instances": dict(self._open),
                "emitted": dict(self._emitted),
                "usage": self._usage,
                "covered": self._covered(),
                "last_cycle_at": datetime.now(UTC),
            }
        )
        await self._save(self.cp)
        self._saved = self.cp

    def _covered(self) -> list[tuple[int, int]]:
        """The app's connected intervals still relevant to this flow (kept across restarts)."""
        if self._coverage is None:
            return []
        since = self.cp.watermark_ms - int(self._events.gap_margin_seconds * 1000) - DAY_MS
        return self._coverage.intervals(self._clock(), since=since)

    def _observe(self, now: int) -> None:
        flow = self.source.flow
        self._metrics.open_instances.labels(flow).set(len(self._open))
        self._metrics.freshness.labels(flow).set(max(0.0, (now - self.cp.watermark_ms) / 1000))
        self._metrics.last_poll.labels(flow).set(now / 1000)
        if self.terminals:
            self._metrics.calls_per_terminal.labels(flow).set(self.calls / self.terminals)
