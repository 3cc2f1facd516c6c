"""``dingdee quota``: DingTalk's monthly call allowance, as spent and as planned.

``status`` reads the extractor's checkpoints (each carries its month's metered calls) and projects
every app's month at its current pace; ``plan`` projects a month for an organisation before it
runs dingdee, with events on and off. Both use the model of :mod:`dingdee_common.quota`.

Exit codes: 0 every projection fits its budget (or no budget is known); 1 one does not; 2 bad
arguments or settings.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dingdee_common.checkpoints import latest_checkpoints
from dingdee_common.contracts import CallUsage
from dingdee_common.kafka.topics import Topics
from dingdee_common.quota import (
    DEFAULT_MONTHLY_BUDGET,
    EVENT_GETS_PER_APPROVAL,
    HEADROOM,
    Demand,
    events_month,
    interval_for_budget,
    month_bounds_ms,
    month_of,
    project_month,
    total_usage,
)
from dingdee_common.runtime import settings_or_exit
from dingdee_common.schedule import DEFAULT, best_schedule, evaluate, fit_budget
from dingdee_common.settings import ServiceSettings
from dingdee_ops.dlq.records import parse_time
from dingdee_ops.terminal import safe

__all__ = ["app"]

app = typer.Typer(help="DingTalk's monthly call allowance: spent, projected, planned.")
console = Console()
APPS_ENV = "DINGDEE_DINGTALK__APPS"
DEFAULT_ENV = "DINGDEE_DINGTALK__DEFAULT_MONTHLY_CALL_BUDGET"


def _budgets(options: list[str]) -> dict[str, int]:
    """``--budget APP=N`` options over the budgets of the apps in the extractor's own
    ``APPS_ENV`` (``monthly_call_budget``, else ``DEFAULT_ENV``, else the standard allowance)."""
    budgets: dict[str, int] = {}
    raw = os.environ.get(APPS_ENV)
    if raw:
        try:
            apps = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise typer.BadParameter(f"{APPS_ENV} is not JSON: {exc}") from exc
        default = int(os.environ.get(DEFAULT_ENV) or DEFAULT_MONTHLY_BUDGET)
        for name, spec in apps.items() if isinstance(apps, dict) else ():
            if isinstance(spec, dict):  # the extractor's rule: its own budget, else the default
                budgets[name] = int(spec.get("monthly_call_budget") or default)
    for option in options:
        name, sep, value = option.partition("=")
        if not sep or not value.isdigit():
            raise typer.BadParameter(f"--budget {option!r}: expected APP=CALLS, e.g. main=5000")
        budgets[name] = int(value)
    return budgets


def _interval(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


STATUS_COLUMNS = (
    "app",
    "flows",
    "listids",
    "get",
    "used",
    "pace",
    "projected",
    "budget",
    "left",
    "fits",
    "pace that fits",
    "contacts (exempt)",
)
BudgetOption = Annotated[
    list[str] | None,
    typer.Option(help=f"APP=CALLS; defaults to each app's budget in {APPS_ENV}"),
]
AtOption = Annotated[
    str | None, typer.Option(help="project as of this time (ISO 8601); default now")
]


@app.command("status")
def status(budget: BudgetOption = None, at: AtOption = None) -> None:
    """This month's metered calls per DingTalk app and the month they are heading for."""
    budgets = _budgets(budget or [])
    try:
        now = int((parse_time(at).timestamp() if at else time.time()) * 1000)
    except ValueError as exc:
        raise typer.BadParameter(f"--at: {exc}") from exc
    settings = settings_or_exit(ServiceSettings, "dingdee quota")
    topic = Topics(settings.kafka.topic_prefix).checkpoints
    checkpoints = asyncio.run(latest_checkpoints(settings.kafka, topic))
    month = month_of(now)
    remaining_s = (month_bounds_ms(month)[1] - now) / 1000
    by_app: dict[str, list[tuple[str, CallUsage]]] = {}
    for key, cp in checkpoints.items():
        if cp.usage is not None and cp.usage.month == month:
            by_app.setdefault(cp.usage.app, []).append((key, cp.usage))
    if not by_app:
        console.print(f"No metered calls recorded for {month} in {topic}.")
        raise typer.Exit(0)
    table = Table(*STATUS_COLUMNS)
    over = False
    for name, keyed in sorted(by_app.items()):
        row, fits = _app_row(name, keyed, month, now, remaining_s, budgets.get(name))
        table.add_row(*row)
        over |= not fits
    console.print(f"[bold]DingTalk metered calls, {month} (CST)[/bold] from {topic}")
    console.print(table)
    if over:
        console.print(
            "[yellow]At the current pace the month exceeds its budget; an extractor that knows "
            "the budget stretches its poll interval to the pace that fits.[/yellow]"
        )
    raise typer.Exit(1 if over else 0)


def _app_row(
    name: str,
    keyed: list[tuple[str, CallUsage]],
    month: str,
    now: int,
    remaining_s: float,
    limit: int | None,
) -> tuple[list[str | Text], bool]:
    """App ``name``'s row of ``status`` (its checkpoints' usage by key) and whether it fits."""
    usage = total_usage([u for _, u in keyed], name, month)
    flows = sum(
        1 for key, _ in keyed if not key.startswith(("backfill:", "followups:", "refdata:"))
    )
    demand = Demand.measured(usage, now, flows=max(flows, 1))
    elapsed_s = max((now - usage.since_ms) / 1000, 1.0)
    interval = elapsed_s * demand.flows / usage.cycles if usage.cycles else elapsed_s
    projected = project_month(usage.calls, demand, interval, remaining_s)
    fits = limit is None or projected <= limit
    fitting = "-"
    if limit is not None:
        fitting = _interval(
            interval_for_budget(
                limit, usage.calls, demand, remaining_s, floor_s=1.0, ceiling_s=86_400.0
            )
        )
    row: list[str | Text] = [
        safe(name),  # the app name comes from a checkpoint record on a topic
        str(flows),
        str(usage.list_calls),
        str(usage.get_calls),
        str(usage.calls),
        f"every {_interval(interval)}",
        f"{projected:,.0f}",
        f"{limit:,}" if limit else "-",
        f"{limit - usage.calls:,}" if limit else "-",
        "-" if limit is None else ("[green]yes[/green]" if fits else "[red]no[/red]"),
        fitting,
        str(usage.contact_calls),
    ]
    return row, fits


ApprovalsOption = Annotated[int, typer.Option(min=0, help="approvals a month, all flows")]
FlowsOption = Annotated[int, typer.Option(min=1, help="flows (process codes) polled")]
IntervalOption = Annotated[
    float, typer.Option(min=1.0, help="poll interval without events, seconds")
]
VerifyDaysOption = Annotated[
    float, typer.Option(min=1.0, max=100.0, help="events: each flow verified every N days")
]
LongGapsOption = Annotated[
    float,
    typer.Option(min=0.0, help="events: gaps a month long enough to list (outages, restarts)"),
]
VerifySampleOption = Annotated[
    float,
    typer.Option(
        min=0.01,
        max=1.0,
        help="events: also project DINGDEE_EVENTS__VERIFY_SAMPLE, the share of flows each "
        "verification lists (1: only the full row)",
    ),
]
PlanBudgetOption = Annotated[int | None, typer.Option(min=1, help="monthly call budget")]
LostEventsOption = Annotated[
    float,
    typer.Option(
        min=0.0,
        max=1.0,
        help="events, sampled: share of events DingTalk loses while connected; a sampled "
        "listing that finds an approval whose two events were lost lists every flow "
        "(make bench's simulated week: 0.05)",
    ),
]


@app.command("plan")
def plan(
    approvals_per_month: ApprovalsOption,
    flows: FlowsOption = 1,
    interval: IntervalOption = DEFAULT.interval_s,
    verify_days: VerifyDaysOption = 14.0,
    long_gaps: LongGapsOption = 1.0,
    verify_sample: VerifySampleOption = 0.25,
    lost_events: LostEventsOption = 0.05,
    budget: PlanBudgetOption = None,
) -> None:
    """Project a 30-day month of calls with events on and off (and fit a budget).

    Polling's get per approval follow its re-check schedule (the extractor's defaults, first
    re-check a minute after creation, ×2 up to 6 h; a re-check waits for the next cycle). With
    --budget, also the interval the extractor stretches polling to (re-checks stretched alike)
    and the freshest polling-only schedule that fits, with its freshness: hours from an
    approval's finish to its snapshot.
    """
    table = Table("mode", "get/approval", "poll every", "calls/month", "calls/approval")
    if budget:
        table.add_column(f"poll every, to fit {budget:,} ({HEADROOM:.0%})")
        table.add_column("calls/month then")
    evented = _events_rows(
        table,
        approvals_per_month,
        flows,
        (verify_days, long_gaps, verify_sample, lost_events),
        budget,
    )
    table.add_row(*_polling_row(approvals_per_month, flows, interval, budget))
    over = budget is not None and evented > budget * HEADROOM
    console.print(
        f"[bold]{approvals_per_month:,} approvals a month over {flows} flow(s)[/bold] "
        "(polling: get/approval from the re-check schedule, a listids page per cycle and flow "
        "and one per 20 approvals, plus the daily sweep; events: a get per approval, listids "
        "for each flow's verification, every flow per long gap and, with sampling, per alarm; "
        "DESIGN §5)"
    )
    console.print(table)
    if budget:
        _best_polling(approvals_per_month, flows, budget)
    if over:
        console.print("[red]Even with events the approvals alone exceed the budget.[/red]")
    raise typer.Exit(1 if over else 0)


def _events_rows(
    table: Table,
    approvals_per_month: int,
    flows: int,
    events: tuple[float, float, float, float],
    budget: int | None,
) -> float:
    """``plan``'s events rows (every flow verified, then sampled); the full row's calls.

    ``events``: verification interval in days, long gaps a month, verify sample, lost events.
    """
    verify_days, long_gaps, verify_sample, lost_events = events
    per = max(approvals_per_month, 1)
    rows = [("events", f"verify every {verify_days:g} d", 1.0)]
    if verify_sample < 1:
        rows.append(
            (
                f"events, sampled {verify_sample:g}",
                f"{verify_sample:.0%} of flows every {verify_days:g} d",
                verify_sample,
            )
        )
    months = []
    for mode, every, sample in rows:
        calls = events_month(
            approvals_per_month,
            flows,
            verify_interval_s=verify_days * 86_400,
            long_gaps_per_month=long_gaps,
            verify_sample=sample,
            lost_events=lost_events,
        )
        months.append(calls)
        table.add_row(
            mode,
            f"{EVENT_GETS_PER_APPROVAL:.2f}",
            every,
            f"{calls:,.0f}",
            f"{calls / per:.2f}",
            *(["-", f"{calls:,.0f}"] if budget else []),
        )
    return months[0]


def _polling_row(
    approvals_per_month: int, flows: int, every: float, budget: int | None
) -> list[str]:
    """Polling with the default re-checks every ``every`` seconds, and stretched to ``budget``
    as the extractor stretches it (``DINGDEE_POLL__BUDGET_MAX_INTERVAL_SECONDS``, a day)."""
    schedule = replace(DEFAULT, interval_s=every)
    figures = evaluate(schedule, approvals_per_month, flows)
    calls, per = figures.calls_per_month, max(approvals_per_month, 1)
    row = ["polling", f"{figures.gets_per_approval:.2f}", _interval(every), f"{calls:,.0f}"]
    row.append(f"{calls / per:.2f}")
    if budget:
        day = 86_400.0
        fit = fit_budget(
            schedule,
            approvals_per_month,
            flows,
            budget,
            ceiling_s=max(every, day),
            cap_s=max(schedule.recheck_max_s, day),
        )
        if fit.calls_per_month > budget * HEADROOM:
            row[0] = "polling [red](does not fit)[/red]"
        fitted = f"{_interval(fit.schedule.interval_s)} ({fit.gets_per_approval:.2f} get/approval)"
        row += [fitted, f"{fit.calls_per_month:,.0f}"]
    return row


def _best_polling(approvals_per_month: int, flows: int, budget: int) -> None:
    """The freshest polling-only schedule that fits ``budget`` (dingdee_common.schedule)."""
    best = best_schedule(approvals_per_month, flows, budget)
    if best is None:
        console.print(f"Polling only: no schedule up to a day apart fits {budget:,}.")
        return
    console.print(
        f"Polling only, the freshest schedule that fits {budget:,}: {best.schedule.describe()}: "
        f"{best.calls_per_month:,.0f} calls "
        f"({best.calls_per_month / max(approvals_per_month, 1):.2f}/approval, "
        f"{best.gets_per_approval:.2f} get/approval); finish → snapshot p50 "
        f"{best.freshness_p50_h:.1f} h, p90 {best.freshness_p90_h:.1f} h"
    )
