"""``dingdee quota plan``: events full and sampled, polling, and the best polling schedule."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from dingdee_common.schedule import best_schedule
from dingdee_ops.cli.quota import app


def plan(*args: str) -> str:
    done = CliRunner().invoke(app, ["plan", *args], env={"COLUMNS": "200"})
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
