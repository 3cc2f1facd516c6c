"""Waiting out a DingTalk or broker outage: back-pressure, never dead letters (DESIGN §4).

When a flow's cycle stops because DingTalk does not answer (:class:`DingTalkUnavailableError`)
or the broker does not acknowledge (a retriable Kafka error), nothing past its last acknowledged
checkpoint counts as done, so nothing is lost by stopping: the flow waits (capped exponential
backoff with full jitter, at least as long as a throttling answer asked for) and runs the cycle
again from there, for as long as it takes. Meanwhile ``/readyz`` says what is down and since
when, and ``dingdee_dingtalk_up{app}`` is 0 while DingTalk is.

Configuration errors found while running (:meth:`OutageWatch.report`: Stream mode refused, a
``process_code`` DingTalk does not know) are no outage: nothing waits for them, polling goes on,
but ``/readyz`` names them until they are fixed.

Work held up longer than it should be (:meth:`OutageWatch.behind`: follow-ups waiting on DingTalk
past ``DINGDEE_FOLLOWUPS__STUCK_SECONDS``) is back-pressure too: ``/readyz`` says so, with the
reason, until it catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable

from aiokafka.errors import KafkaError

from dingdee_common.kafka.clients import broker_unavailable
from dingdee_common.observability.logging import get_logger
from dingdee_common.observability.server import Health
from dingdee_common.retry import backoff_delay
from dingdee_extractor.dingtalk.client import DingTalkUnavailableError
from dingdee_extractor.metrics import ExtractorMetrics
from dingdee_extractor.poller import FlowPoller
from dingdee_extractor.settings import OutageSettings

__all__ = ["OutageWatch"]

log = get_logger(__name__)

KAFKA = "Kafka"


class OutageWatch:
    """Which flows find DingTalk or the broker unavailable; runs cycles until they get through."""

    def __init__(
        self,
        settings: OutageSettings,
        metrics: ExtractorMetrics,
        health: Health,
        apps: Iterable[str],
    ) -> None:
        self._policy = settings.policy()
        self._metrics = metrics
        self._health = health
        self._down: dict[str, dict[str, str]] = {}  # "DingTalk app 'x'" or Kafka → {flow: why}
        self._since: dict[str, float] = {}  # the same keys → wall time it went down
        self._problems: dict[str, str] = {}  # configuration errors found running: what → why
        self._behind: dict[str, str] = {}  # work held up (back-pressure): what → why
        self._apps = sorted(set(apps))
        for app in self._apps:
            metrics.dingtalk_up.labels(app).set(1)
            metrics.punished.labels(app)  # the series exists at 0 before any ban

    async def cycle(self, poller: FlowPoller, stop: asyncio.Event) -> bool:
        """Run ``poller.cycle()`` until it completes (True) or ``stop`` is set first (False).

        Raises:
            KafkaError: one that waiting does not heal (see ``broker_unavailable``).
        """
        attempt, down = 0, None
        while not stop.is_set():
            try:
                await poller.cycle()
            except DingTalkUnavailableError as exc:
                down, retry_after = _dingtalk(poller.source.app), exc.retry_after or 0.0
                error = str(exc)
            except KafkaError as exc:
                if not broker_unavailable(exc):
                    raise
                down, retry_after, error = KAFKA, 0.0, f"{type(exc).__name__}: {exc}"
            else:
                self._recovered(poller, attempt)
                self.report(_flow(poller.source.flow), poller.config_error)
                return True
            attempt += 1
            delay = max(backoff_delay(attempt, self._policy), retry_after)
            self._failed(down, poller, error, attempt, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
        return False

    def _failed(
        self, down: str, poller: FlowPoller, error: str, attempt: int, delay: float
    ) -> None:
        flow = poller.source.flow
        self._since.setdefault(down, time.time())
        for flows in self._down.values():  # a flow waits for one thing at a time
            flows.pop(flow, None)
        self._down.setdefault(down, {})[flow] = error
        self._health.progress()  # waiting on purpose is progress: liveness must not fail
        self._publish()
        log.warning(
            "extractor.kafka.unavailable" if down == KAFKA else "extractor.dingtalk.unavailable",
            app=poller.source.app,
            flow=flow,
            attempt=attempt,
            retry_in_seconds=round(delay, 3),
            down_seconds=round(time.time() - self._since[down], 1),
            error=error,
        )

    def _recovered(self, poller: FlowPoller, attempts: int) -> None:
        if attempts == 0:
            return
        flow = poller.source.flow
        for down, flows in list(self._down.items()):
            if flows.pop(flow, None) is not None:
                log.info(
                    "extractor.outage.ended",
                    unavailable=down,
                    flow=flow,
                    attempts=attempts,
                    down_seconds=round(time.time() - self._since[down], 1),
                )
        self._publish()

    def report(self, subject: str, error: str | None) -> None:
        """A configuration error about ``subject`` (None: there is none, or no more)."""
        self._note(self._problems, subject, error)

    def behind(self, subject: str, why: str | None) -> None:
        """``subject`` is held up by back-pressure, and why (None: it caught up)."""
        self._note(self._behind, subject, why)

    def _note(self, table: dict[str, str], subject: str, text: str | None) -> None:
        """Set (or, with None, clear) ``subject``'s line in ``table``; publish a change."""
        if table.get(subject) == text:
            return
        if text is None:
            table.pop(subject, None)
        else:
            table[subject] = text
        self._publish()

    def _publish(self) -> None:
        """The gauges, and ``/readyz`` naming what is down, since when and why."""
        for down in [d for d, flows in self._down.items() if not flows]:
            del self._down[down], self._since[down]
        for app in self._apps:
            self._metrics.dingtalk_up.labels(app).set(0 if _dingtalk(app) in self._down else 1)
        trouble = bool(self._down or self._problems or self._behind)
        self._metrics.stage.ready.labels("extractor").set(0 if trouble else 1)
        if not trouble:
            self._health.set_ready()
            return
        reasons = [f"configuration error: {why}" for _, why in sorted(self._problems.items())]
        reasons += [why for _, why in sorted(self._behind.items())]
        for down, flows in sorted(self._down.items()):
            seconds = time.time() - self._since[down]
            reasons.append(
                f"{down} unavailable for {seconds:.0f}s (flows {', '.join(sorted(flows))}): "
                f"{next(iter(flows.values()))}; retrying with backoff"
            )
        self._health.set_not_ready("; ".join(reasons))


def _flow(flow: str) -> str:
    return f"flow {flow!r}"


def _dingtalk(app: str) -> str:
    return f"DingTalk app {app!r}"
