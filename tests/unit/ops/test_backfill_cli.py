"""``dingdee backfill`` (typer) and the extractor's own command line, which takes no arguments."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import pytest
from typer.testing import CliRunner

from dingdee_extractor import __main__ as service
from dingdee_extractor.backfill import BackfillArgs
from dingdee_ops.cli import backfill as cli
from dingdee_ops.cli.main import app

runner = CliRunner()


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[BackfillArgs | None]:
    """What the extractor's ``run`` was called with, instead of running it; it exits 7 after
    reporting half of the history read."""
    seen: list[BackfillArgs | None] = []

    async def fake_run(
        backfill: BackfillArgs | None = None, progress: Callable[[int, int], None] | None = None
    ) -> int:
        seen.append(backfill)
        if progress is not None:
            progress(5, 10)
        return 7

    monkeypatch.setattr(cli, "run", fake_run)
    monkeypatch.setattr(service, "run", fake_run)
    return seen


def test_backfill_options_reach_the_extractor(runs: list[BackfillArgs | None]) -> None:
    argv = ["backfill", "--flow", "petty-cash", "--from", "2026-01-01", "--to", "2026-02-01"]
    result = runner.invoke(app, [*argv, "--chunk-days", "2", "--no-follow"])
    assert result.exit_code == 7, result.output
    assert runs == [BackfillArgs("petty-cash", date(2026, 1, 1), date(2026, 2, 1), 2.0, True)]
    runner.invoke(app, ["backfill", "--flow", "f", "--from", "2026-01-01"])
    assert runs[-1] == BackfillArgs("f", date(2026, 1, 1)), "defaults: to now, 1 day, follow"


@pytest.mark.parametrize(
    "argv",
    [
        ["backfill", "--from", "2026-01-01"],  # no flow
        ["backfill", "--flow", "f", "--from", "2026-13-01"],
        ["backfill", "--flow", "f", "--from", "2026-01-01", "--chunk-days", "0"],
    ],
)
def test_a_bad_backfill_command_line_is_refused_with_2_before_anything_runs(
    argv: list[str], runs: list[BackfillArgs | None]
) -> None:
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert runs == []


def test_the_service_runs_without_arguments_and_refuses_any(
    runs: list[BackfillArgs | None], capsys: pytest.CaptureFixture[str]
) -> None:
    assert service.main([]) == 7
    assert runs == [None]
    assert service.main(["--help"]) == 0
    assert service.main(["backfill", "--flow", "f"]) == 2
    assert runs == [None], "nothing ran for a refused command line"
    assert "dingdee backfill" in capsys.readouterr().err
