"""``dingdee doctor``'s vocabulary: one :class:`Check` per thing checked, and the quota check.

The DingTalk checks live in the extractor's ``doctor`` module, the Kingdee checks in the loader's;
each service runs its own part at start-up and the ``dingdee doctor`` command (the operator tools)
runs them all. This module holds what they share: the result type, its rendering, and the
projection of each DingTalk app's month against its budget (the model of
:mod:`dingdee_common.quota`, as ``dingdee quota plan`` uses it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from dingdee_common.errors import FatalError
from dingdee_common.observability.logging import get_logger
from dingdee_common.quota import HEADROOM, events_month
from dingdee_common.schedule import DEFAULT, Schedule, evaluate, fit_budget

__all__ = [
    "AppPlan",
    "Check",
    "Level",
    "budget_check",
    "exit_code",
    "render",
    "startup_verdict",
    "worst",
]

Level = Literal["ok", "warning", "error"]
_ORDER = {"ok": 0, "warning": 1, "error": 2}


@dataclass(frozen=True, slots=True)
class Check:
    """One check's outcome; ``message`` says what was found and, unless ok, what to do."""

    part: str  # dingtalk, kingdee, quota, config
    subject: str  # the flow or app checked
    name: str  # what was checked, e.g. "process_code", "field FCausa"
    level: Level
    message: str

    def line(self) -> str:
        return f"{self.level:<7} {self.part}/{self.subject}: {self.name}: {self.message}"

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def worst(checks: Iterable[Check]) -> Level:
    """The most severe level among ``checks`` (``ok`` for none)."""
    levels = [c.level for c in checks]
    return max(levels, key=_ORDER.__getitem__, default="ok")


def exit_code(checks: Iterable[Check]) -> int:
    """1 when any check is an error, else 0."""
    return 1 if worst(checks) == "error" else 0


def render(checks: Iterable[Check]) -> str:
    """One line per check."""
    return "\n".join(c.line() for c in checks)


def startup_verdict(service: str, checks: Sequence[Check]) -> None:
    """A service's own checks at start-up: log each warning, fail on the first error.

    Raises:
        FatalError: one line, the first error (and how many more ``dingdee doctor`` shows).
    """
    log = get_logger(f"dingdee_{service}.doctor")
    for check in checks:
        if check.level == "warning":
            log.warning(f"{service}.doctor.warning", check=check.line())
    errors = [c for c in checks if c.level == "error"]
    if errors:
        more = f" (+{len(errors) - 1} more: run dingdee doctor)" if len(errors) > 1 else ""
        raise FatalError(f"start-up check failed: {errors[0].line()}{more}", code="doctor")
    log.info(f"{service}.doctor.passed", checks=len(checks))


@dataclass(frozen=True, slots=True)
class AppPlan:
    """What one DingTalk app's settings spend: its flows, how they poll, what it may spend."""

    app: str
    flows: int
    events: bool
    interval_s: float  # the configured poll interval (the safety net's with events on)
    max_interval_s: float  # the longest interval the budget may stretch polling to
    sweep_interval_s: float
    approvals_per_month: int
    budget: int
    allow_over_budget: bool = False
    verify_interval_s: float = 14 * 86_400.0  # events mode: the gap-aware safety net (§5)
    recheck: Schedule = DEFAULT  # polling's open re-checks (its interval_s is not read)


def _every(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def budget_check(plan: AppPlan) -> Check:
    """Whether ``plan`` fits 90 % of its budget, polling stretched at most to its longest interval.

    ok: it fits as configured; warning: it fits once the extractor stretches polling (or it does
    not fit and ``allow_over_budget`` is set); error: even the longest interval does not fit.
    """
    if plan.events:
        return _events_budget_check(plan)
    schedule = replace(plan.recheck, interval_s=plan.interval_s)
    figures = evaluate(schedule, plan.approvals_per_month, plan.flows, plan.sweep_interval_s)
    configured = figures.calls_per_month
    ceiling = max(plan.interval_s, plan.max_interval_s)
    fit = fit_budget(
        schedule,
        plan.approvals_per_month,
        plan.flows,
        plan.budget,
        ceiling_s=ceiling,
        cap_s=max(schedule.recheck_max_s, plan.max_interval_s),
        sweep_interval_s=plan.sweep_interval_s,
    )
    fitted, then = fit.schedule.interval_s, fit.calls_per_month
    target = plan.budget * HEADROOM
    facts = (
        f"{plan.flows} flow(s), polling, {plan.approvals_per_month:,} approvals/month, poll every "
        f"{_every(plan.interval_s)} ({figures.gets_per_approval:.1f} get/approval): "
        f"{configured:,.0f} calls/month projected, budget "
        f"{plan.budget:,} ({HEADROOM:.0%} = {target:,.0f})"
    )
    if configured <= target:
        return Check("quota", plan.app, "monthly budget", "ok", facts)
    if then <= target:
        return Check(
            "quota",
            plan.app,
            "monthly budget",
            "warning",
            f"{facts}; the extractor stretches polling to every {_every(fitted)} "
            f"({then:,.0f} calls/month); enable events (DINGDEE_EVENTS__ENABLED=true) to keep "
            "latency low",
        )
    return _over_budget(
        plan,
        f"{facts}; even polling every {_every(ceiling)} projects {then:,.0f}: enable events "
        "(DINGDEE_EVENTS__ENABLED=true), ",
    )


def _over_budget(plan: AppPlan, said: str) -> Check:
    """The budget does not fit: an error, or a warning when allowed over budget."""
    level: Level = "warning" if plan.allow_over_budget else "error"
    return Check(
        "quota",
        plan.app,
        "monthly budget",
        level,
        f"{said}raise the app's monthly_call_budget (buy more calls) or lower approvals_per_month"
        + (
            " (allowed over budget by DINGDEE_DINGTALK__ALLOW_OVER_BUDGET)"
            if level == "warning"
            else "; DINGDEE_DINGTALK__ALLOW_OVER_BUDGET=true starts anyway"
        ),
    )


def _events_budget_check(plan: AppPlan) -> Check:
    """Events mode: calls follow the approvals (and each flow's verification), not a poll
    interval, so there is nothing to stretch; the budget fits or it does not."""
    month = events_month(
        plan.approvals_per_month, plan.flows, verify_interval_s=plan.verify_interval_s
    )
    target = plan.budget * HEADROOM
    facts = (
        f"{plan.flows} flow(s), events, {plan.approvals_per_month:,} approvals/month, each flow "
        f"verified every {_every(plan.verify_interval_s)}: {month:,.0f} calls/month projected, "
        f"budget {plan.budget:,} ({HEADROOM:.0%} = {target:,.0f})"
    )
    if month <= target:
        return Check("quota", plan.app, "monthly budget", "ok", facts)
    return _over_budget(plan, f"{facts}: ")
