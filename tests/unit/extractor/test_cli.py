"""The extractor's command line (typer): what reaches the service, and what is refused."""

from __future__ import annotations

from datetime import date

import pytest
from typer.testing import CliRunner

from dingdee_extractor import __main__ as cli
from dingdee_extractor.backfill import BackfillArgs

runner = CliRunner()


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[BackfillArgs | None]:
    """What ``_run`` was called with, instead of running the service; it exits 7."""
    seen: list[BackfillArgs | None] = []

    async def fake_run(backfill: BackfillArgs | None) -> int:
        seen.append(backfill)
        return 7

    monkeypatch.setattr(cli, "_run", fake_run)
    return seen


def test_without_a_command_the_service_runs_and_its_exit_code_is_kept(
    runs: list[BackfillArgs | None],
) -> None:
    result = runner.invoke(cli.app, [])
    assert (result.exit_code, runs) == (7, [None])


def test_backfill_options_reach_the_backfill(runs: list[BackfillArgs | None]) -> None:
    argv = ["backfill", "--flow", "petty-cash", "--from", "2026-01-01", "--to", "2026-02-01"]
    result = runner.invoke(cli.app, [*argv, "--chunk-days", "2", "--no-follow"])
    assert result.exit_code == 7, result.output
    assert runs == [BackfillArgs("petty-cash", date(2026, 1, 1), date(2026, 2, 1), 2.0, True)]
    runner.invoke(cli.app, ["backfill", "--flow", "f", "--from", "2026-01-01"])
    assert runs[-1] == BackfillArgs("f", date(2026, 1, 1)), "defaults: to now, 1 day, follow"


@pytest.mark.parametrize(
    "argv",
    [
        ["backfill", "--from", "2026-01-01"],  # no flow
        ["backfill", "--flow", "f", "--from", "2026-13-01"],
        ["backfill", "--flow", "f", "--from", "2026-01-01", "--chunk-days", "0"],
        ["sweep"],
    ],
)
def test_a_bad_command_line_is_refused_with_2_before_anything_runs(
    argv: list[str], runs: list[BackfillArgs | None]
) -> None:
    result = runner.invoke(cli.app, argv)
    assert result.exit_code == 2, result.output
    assert runs == []
