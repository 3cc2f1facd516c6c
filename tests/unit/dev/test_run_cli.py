"""``dingdee-dev run``'s flags reach the stack and the watcher as ``make run`` passes them."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dingdee_dev import run as run_module
from dingdee_dev.run import RunOptions
from dingdee_dev.stack import StackConfig

ROOT = Path(__file__).resolve().parents[3]
runner = CliRunner()


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[tuple[StackConfig, RunOptions]]:
    calls: list[tuple[StackConfig, RunOptions]] = []

    async def fake_main(config: StackConfig, options: RunOptions) -> int:
        calls.append((config, options))
        return 3

    monkeypatch.setattr(run_module, "_main", fake_main)
    return calls


def test_every_flag(started: list[tuple[StackConfig, RunOptions]], tmp_path: Path) -> None:
    args = ["run", "--demo", "5", "--workdir", str(tmp_path), "--flows", str(tmp_path / "f.yaml")]
    args += ["--timeout", "300", "--poll-timeout", "1.5", "--exit-when-done"]
    result = runner.invoke(run_module.cli, args)
    assert result.exit_code == 3, "run's exit code is the command's"
    [(config, options)] = started
    assert (config.workdir, config.flows_file, config.demo) == (tmp_path, tmp_path / "f.yaml", 5)
    assert (options.timeout, options.poll_timeout, options.exit_when_done) == (300.0, 1.5, True)


def test_defaults_are_make_runs(
    started: list[tuple[StackConfig, RunOptions]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(run_module.cli, ["run"]).exit_code == 3
    [(config, options)] = started
    assert config.workdir == tmp_path / ".run"
    assert config.flows_file == ROOT / "config" / "flows.yaml"
    assert config.demo == 300
    assert config.console, "make run starts the console"
    assert options == RunOptions()


def test_run_is_a_sub_command(started: list[tuple[StackConfig, RunOptions]]) -> None:
    result = runner.invoke(run_module.cli, [])
    assert "Run the whole local pipeline" in result.output and not started
