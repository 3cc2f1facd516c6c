"""Back-pressure: while Kingdee as a whole is failing, pause, hold the bills, probe, resume.

Started by the first :class:`~dingdee_loader.sink.KingdeeUnavailableError` (also when Kingdee
refuses the loader's settings: a configuration error); ended only by a probe that Kingdee
answers. Meanwhile ``/readyz`` says why (503), ``dingdee_kingdee_up`` is 0, and the
probes back off exponentially with full jitter up to ``probe_max_backoff_seconds``, with no cap on
their number or time: an outage of any length ends by itself once Kingdee answers again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from dingdee_common.errors import TransientError
from dingdee_common.observability.logging import get_logger
from dingdee_common.observability.server import Health
from dingdee_common.retry import backoff_delay, retry_until_ok
from dingdee_common.settings import RetrySettings
from dingdee_loader.kingdee.client import KingdeeConfigError
from dingdee_loader.metrics import STAGE, LoaderMetrics

__all__ = ["Outage"]

log = get_logger(__name__)


def _refused(cause: TransientError) -> bool:
    """A configuration error (login, permission, licence), not an outage: a human must act."""
    return isinstance(cause, KingdeeConfigError) or isinstance(cause.__cause__, KingdeeConfigError)


class Outage:
    """One Kingdee outage at a time: its state, its signals and its prober task."""

    def __init__(
        self,
        policy: RetrySettings,
        metrics: LoaderMetrics,
        health: Health,
        on_end: Callable[[], None],
    ) -> None:
        self._policy = policy
        self._metrics = metrics
        self._health = health
        self._on_end = on_end
        self._task: asyncio.Task[None] | None = None
        self.since: float | None = None
        self.probes = 0

    @property
    def active(self) -> bool:
        return self.since is not None

    def begin(self, cause: TransientError, probe: Callable[[], Awaitable[None]]) -> None:
        """Kingdee failed as a whole: turn not-ready and start probing (no-op if already on)."""
        if self.active:
            return
        self.since = time.monotonic()
        self.probes = 0
        self._metrics.kingdee_up.set(0)
        self._metrics.stage.ready.labels(STAGE).set(0)
        log.warning(
            "loader.kingdee.refused" if _refused(cause) else "loader.kingdee.unavailable",
            error_type=cause.error_type,
            error=cause.message,
            action="consuming paused, bills held; probing Kingdee until it answers",
        )
        self._task = asyncio.create_task(self._probe_until_up(cause, probe))

    def _say(self, cause: TransientError, delay: float) -> None:
        down = time.monotonic() - (self.since or time.monotonic())
        what = "Kingdee refuses the loader's settings" if _refused(cause) else "Kingdee unavailable"
        self._health.set_not_ready(
            f"{what} for {down:.0f}s ({cause.error_type}: {cause.message[:400]}); "
            f"consuming paused, bills held; {self.probes} probes failed, next in {delay:.1f}s"
        )

    async def _probe_until_up(
        self, cause: TransientError, probe: Callable[[], Awaitable[None]]
    ) -> None:
        def failed(exc: TransientError, attempt: int, delay: float) -> None:
            self.probes = attempt
            self._metrics.probes.labels("failed").inc()
            self._say(exc, delay)
            log.info(
                "loader.kingdee.probe_failed",
                attempt=attempt,
                next_in=round(delay, 3),
                error_type=exc.error_type,
                error=exc.message,
            )

        # the failures that began the outage count as a first probe: wait before the next one
        first = max(backoff_delay(1, self._policy), cause.retry_after or 0.0)
        self._say(cause, first)
        await asyncio.sleep(first)
        await retry_until_ok(probe, self._policy, on_retry=failed)
        self._metrics.probes.labels("ok").inc()
        lasted = time.monotonic() - (self.since or time.monotonic())
        log.info("loader.kingdee.recovered", outage_seconds=round(lasted, 3), probes=self.probes)
        self.since = None
        self._task = None
        self._metrics.kingdee_up.set(1)
        self._on_end()

    def raise_if_failed(self) -> None:
        """Re-raise what ended the prober other than success (a rejected credential)."""
        task = self._task
        if task is not None and task.done() and not task.cancelled():
            exc = task.exception()
            if exc is not None:
                raise exc

    async def aclose(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
