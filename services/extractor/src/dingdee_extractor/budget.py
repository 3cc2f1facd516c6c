"""Per DingTalk app: report this month's metered calls and pace polling to the monthly budget.

The counts live in each flow's checkpoint (``Checkpoint.usage``), so they survive restarts; the
model that turns them into a projection and an interval is :mod:`dingdee_common.quota`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from dingdee_common.contracts import CallUsage
from dingdee_common.observability.logging import get_logger
from dingdee_common.quota import (
    Demand,
    interval_for_budget,
    month_bounds_ms,
    month_of,
    project_month,
    total_usage,
)
from dingdee_extractor.metrics import ExtractorMetrics
from dingdee_extractor.poller import FlowPoller

__all__ = ["BudgetPacer"]

log = get_logger(__name__)


class BudgetPacer:
    """The poll interval of one app's flows: the configured one, stretched to fit the budget."""

    def __init__(
        self,
        app: str,
        budget: int | None,
        pollers: Sequence[FlowPoller],
        metrics: ExtractorMetrics,
        *,
        others: Sequence[CallUsage | None] = (),
        ceiling_s: float,
        clock: Callable[[], int],
    ) -> None:
        self.app = app
        self.budget = budget
        self._pollers = pollers
        self._others = list(others)
        self._metrics = metrics
        self._ceiling_s = ceiling_s
        self._clock = clock
        self._paced: dict[str, float] = {}

    def interval(self, poller: FlowPoller, floor_s: float, *, stretch: bool = True) -> float:
        """Seconds until ``poller``'s next cycle; sets its ``pace`` (re-checks slow down as
        much as polling) and updates the app's quota metrics.

        ``stretch=False`` (events mode: calls follow the approvals, not the clock) keeps the
        configured interval and only publishes the month's usage, projection and budget.
        """
        now = self._clock()
        month = month_of(now)
        usage = total_usage([*(p.cp.usage for p in self._pollers), *self._others], self.app, month)
        demand = Demand.measured(usage, now, flows=len(self._pollers))
        remaining_s = max(0.0, (month_bounds_ms(month)[1] - now) / 1000)
        interval = floor_s
        if self.budget is not None and stretch:
            interval = interval_for_budget(
                self.budget,
                usage.calls,
                demand,
                remaining_s,
                floor_s=floor_s,
                ceiling_s=max(floor_s, self._ceiling_s),
            )
        if self.budget is not None:
            self._metrics.quota_remaining.labels(self.app).set(max(0, self.budget - usage.calls))
        projected = project_month(usage.calls, demand, interval, remaining_s)
        self._metrics.quota_used.labels(self.app).set(usage.calls)
        self._metrics.quota_projected.labels(self.app).set(round(projected))
        self._metrics.poll_interval.labels(poller.source.flow).set(interval)
        flow = poller.source.flow
        if abs(interval - self._paced.get(flow, floor_s)) > 0.05 * interval:
            log.info(
                "extractor.budget.paced",
                app=self.app,
                flow=flow,
                interval_seconds=round(interval, 1),
                configured_seconds=floor_s,
                used=usage.calls,
                budget=self.budget,
                projected=round(projected),
            )
        self._paced[flow] = interval
        poller.pace = interval / floor_s
        return interval
