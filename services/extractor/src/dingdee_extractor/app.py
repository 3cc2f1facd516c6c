"""Wiring and lifecycle of the extractor: clients, checkpoints, one poller per flow."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer

from dingdee_common.contracts import CallUsage, Checkpoint
from dingdee_common.kafka.dlq import DeadLetterPublisher
from dingdee_common.kafka.topics import Topics
from dingdee_common.observability.logging import get_logger
from dingdee_common.observability.server import Health
from dingdee_extractor.budget import BudgetPacer
from dingdee_extractor.checkpoints import CheckpointStore
from dingdee_extractor.dingtalk.client import DingTalkClient
from dingdee_extractor.doctor import process_code_error
from dingdee_extractor.emitter import Emitter
from dingdee_extractor.events import EventListener
from dingdee_extractor.flows import FlowSource
from dingdee_extractor.gapnet import Coverage, Sample
from dingdee_extractor.metrics import ExtractorMetrics
from dingdee_extractor.outage import OutageWatch
from dingdee_extractor.poller import FlowPoller
from dingdee_extractor.settings import ExtractorSettings, PollSettings

__all__ = ["ExtractorApp"]

log = get_logger(__name__)


class ExtractorApp:
    """Polls every flow on its interval until asked to stop (``setup`` → ``run`` → ``close``)."""

    def __init__(
        self,
        settings: ExtractorSettings,
        sources: list[FlowSource],
        producer: AIOKafkaProducer,
        client: DingTalkClient,
        metrics: ExtractorMetrics,
        health: Health,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self._settings = settings
        self._sources = sources
        self._producer = producer
        self._client = client
        self._metrics = metrics
        self._health = health
        self._clock = clock
        self._topics = Topics(settings.kafka.topic_prefix)
        self._store = CheckpointStore(settings.kafka, self._topics.checkpoints, producer)
        self.pollers: list[FlowPoller] = []
        self.pacers: dict[str, BudgetPacer] = {}
        self.coverage: dict[str, Coverage] = {}  # per app, events mode only
        self.outage = OutageWatch(
            settings.outage, metrics, health, sorted({s.app for s in sources})
        )
        # contact events → reference sources (issue #14): ``ContactSync.on_event``
        self.contact_hook: Callable[[str, str, dict[str, Any]], None] | None = None

    async def setup(self) -> None:
        """Resume every flow from its last checkpoint."""
        checkpoints = await self._store.load()
        emitter = Emitter(self._producer, self._topics.approvals_raw)
        dlq = DeadLetterPublisher(self._producer, self._topics, "extractor")
        poll = self._poll_settings()
        if self._settings.events.enabled:
            for source in self._sources:
                cp = checkpoints.get(source.flow)
                cov = self.coverage.setdefault(source.app, Coverage())
                cov.restored([tuple(i) for i in cp.covered] if cp else [])  # type: ignore[misc]
        for source in self._sources:
            checkpoint = checkpoints.get(source.flow)
            log.info(
                "extractor.flow.resumed" if checkpoint else "extractor.flow.started",
                flow=source.flow,
                watermark_ms=checkpoint.watermark_ms if checkpoint else source.start_ms(),
                open_instances=len(checkpoint.open_instances) if checkpoint else 0,
            )
            self.pollers.append(self._poller(source, checkpoint, emitter, dlq, poll))
        owned = {p.source.flow for p in self.pollers}
        self._pace([cp.usage for key, cp in checkpoints.items() if key not in owned])
        self._health.set_ready()
        self._metrics.stage.ready.labels("extractor").set(1)

    def _poll_settings(self) -> PollSettings:
        """The poll settings; in events mode, where polling only backs the events up, the
        re-check waits for a lost finish event and the compensation sweep is the verification."""
        poll = self._settings.poll
        events = self._settings.events
        if not events.enabled:
            return poll
        # a lost finish event is found by the re-check, no later than the verification
        late = min(events.open_recheck_initial_seconds, events.verify_interval_seconds)
        # a sampled flow waits at most its turns (gapnet.Sample.rounds) between listings
        turns = Sample(share=events.verify_sample).rounds
        verify_days = events.verify_interval_seconds * turns / 86_400
        return poll.model_copy(
            update={
                "open_recheck_initial_seconds": max(poll.open_recheck_initial_seconds, late),
                "open_recheck_max_seconds": max(poll.open_recheck_max_seconds, late),
                # the compensation sweep becomes the verification: every creation time is
                # listed once, verify_interval after the last one
                "sweep_interval_seconds": events.verify_interval_seconds,
                "sweep_lookback_days": max(poll.sweep_lookback_days, verify_days + 1),
            }
        )

    def _poller(
        self,
        source: FlowSource,
        checkpoint: Checkpoint | None,
        emitter: Emitter,
        dlq: DeadLetterPublisher,
        poll: PollSettings,
    ) -> FlowPoller:
        return FlowPoller(
            source,
            checkpoint,
            client=self._client,
            emitter=emitter,
            save=self._store.save,
            dlq=dlq,
            metrics=self._metrics,
            poll=poll,
            retry=self._settings.retry,
            concurrency=self._settings.dingtalk.get_concurrency,
            clock=self._clock,
            check_code=functools.partial(process_code_error, self._settings),
            coverage=self.coverage.get(source.app),
            events=self._settings.events,
        )

    def _pace(self, others: list[CallUsage | None]) -> None:
        """One budget pacer per DingTalk app, over the flows that spend its allowance.

        ``others`` are the counts of checkpoints this process does not advance (backfills), as
        they were at start-up.
        """
        for app in {p.source.app for p in self.pollers}:
            self.pacers[app] = BudgetPacer(
                app,
                self._settings.dingtalk.budget_of(app),
                [p for p in self.pollers if p.source.app == app],
                self._metrics,
                others=others,
                ceiling_s=self._settings.poll.budget_max_interval_seconds,
                clock=self._clock or (lambda: int(time.time() * 1000)),
            )

    def listeners(self) -> list[EventListener]:
        """One Stream-mode listener per DingTalk app of the flows (when events are enabled)."""
        if not self._settings.events.enabled:
            return []
        by_app: dict[str, dict[str, FlowPoller]] = {}
        for poller in self.pollers:
            by_app.setdefault(poller.source.app, {})[poller.source.process_code] = poller
        apps = self._settings.dingtalk.apps
        listeners = [
            EventListener(
                app,
                apps[app],
                self._settings.events,
                pollers,
                self._metrics,
                outage=self.outage,
                coverage=self.coverage.setdefault(app, Coverage()),
                clock=self._clock,
            )
            for app, pollers in by_app.items()
        ]
        for listener in listeners:
            listener.contact_hook = self.contact_hook
        return listeners

    async def run(self, stop: asyncio.Event) -> None:
        """Run each flow's poll loop (and the event listeners) until ``stop`` is set."""
        loops = [self._loop(p, stop) for p in self.pollers]
        await asyncio.gather(*loops, *(listener.run(stop) for listener in self.listeners()))

    async def _loop(self, poller: FlowPoller, stop: asyncio.Event) -> None:
        configured = poller.source.poll_interval_seconds or (
            self._settings.events.poll_interval_seconds
            if self._settings.events.enabled
            else self._settings.poll.interval_seconds
        )
        pacer = self.pacers[poller.source.app]
        while not stop.is_set():
            started = time.monotonic()
            if not await self.outage.cycle(poller, stop):
                break
            self._health.progress()
            log.info(
                "extractor.cycle.finished",
                flow=poller.source.flow,
                seconds=round(time.monotonic() - started, 3),
                watermark_ms=poller.cp.watermark_ms,
                open_instances=len(poller.cp.open_instances),
                calls=poller.calls,
            )
            # events mode: a tick calls DingTalk only when something is due (gapnet); the calls
            # follow the approvals, there is no poll interval worth stretching
            # (the pacer still publishes the month's usage, projection and budget)
            interval = pacer.interval(poller, configured, stretch=not self._settings.events.enabled)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
