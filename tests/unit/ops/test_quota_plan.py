"""``dingdee quota plan``: events full and sampled, polling, and the best polling schedule."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace

import pytest
from rich.console import Console
from typer.testing import CliRunner

from dingdee_common.quota import HEADROOM
from dingdee_common.schedule import DEFAULT, best_schedule, evaluate, fit_budget
from dingdee_ops.cli import quota
from dingdee_ops.cli.quota import app


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI's console is made at import; in a worker where another test made it first, its
    width is that test's terminal, and the table's rows wrap past the patterns below."""
    monkeypatch.setattr(quota, "console", Console(width=200))
    yield


def plan(*args: str) -> str:
    done = CliRunner().invoke(app, ["plan", *args])
    assert done.exit_code == 0, done.output
    return done.output


def test_30_flows_show_the_sampled_verification_and_the_best_polling_schedule() -> None:
    out = plan("--approvals-per-month", "1000", "--flows", "30", "--budget", "5000")
    full = re.search(r"│ events\s+│.*?│\s*([\d,]+)\s*│\s*([\d.]+)\s*│", out)
    sampled = re.search(r"│ events, sampled 0.25\s+│.*?│\s*([\d,]+)\s*│\s*([\d.]+)\s*│", out)
    assert full and sampled, out
    assert float(sampled.group(2)) < float(full.group(2)) <= 1.1
    best = best_schedule(1000, 30, 5000)
    assert best is not None
    line = " ".join(out.split("Polling only, the freshest schedule that fits 5,000:")[1].split())
    assert line.startswith(best.schedule.describe())
    assert f"p50 {best.freshness_p50_h:.1f} h, p90 {best.freshness_p90_h:.1f} h" in line


def test_no_sampled_row_at_a_full_sample_and_no_schedule_without_a_budget() -> None:
    out = plan("--approvals-per-month", "1000", "--flows", "30", "--verify-sample", "1")
    assert "sampled" not in out and "Polling only" not in out


def test_the_polling_row_takes_its_gets_from_the_schedule_it_projects() -> None:
    out = plan("--approvals-per-month", "300", "--flows", "2", "--interval", "7200")
    row = re.search(r"│ polling\s+│\s*([\d.]+)\s*│\s*2\.0 h\s*│\s*([\d,]+)\s*│", out)
    assert row, out
    figures = evaluate(replace(DEFAULT, interval_s=7200), 300, 2)
    assert float(row.group(1)) == pytest.approx(figures.gets_per_approval, abs=0.005)
    assert row.group(2) == f"{figures.calls_per_month:,.0f}"


def test_fitting_a_budget_stretches_the_rechecks_as_the_extractor_does() -> None:
    out = plan("--approvals-per-month", "1000", "--flows", "2", "--budget", "5000")
    fit = fit_budget(DEFAULT, 1000, 2, 5000, ceiling_s=86_400, cap_s=86_400)
    assert fit.calls_per_month <= 5000 * HEADROOM
    assert fit.gets_per_approval < evaluate(DEFAULT, 1000, 2).gets_per_approval
    assert f"{fit.gets_per_approval:.2f}" in out and f"{fit.calls_per_month:,.0f}" in out
