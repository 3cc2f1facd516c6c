"""``python -m dingdee_transformer`` fails fast on bad configuration (STYLE §9), before any I/O."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _run(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dingdee_transformer"],
        env={"PATH": "/usr/bin:/bin", "DINGDEE_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1", **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )


def test_bad_flows_file_exits_2_naming_flow_and_key(tmp_path: Path) -> None:
    flows = tmp_path / "flows.yaml"
    flows.write_text(
        "flows:\n  - id: petty-cash\n    dingtalk: {process_code: P}\n"
        "    target: {form_id: F, bill_key: 'K{business_id}'}\n"
        "    mapping: {fields: {FDate: {attr: create_time, convert: dat}}}\n",
        encoding="utf-8",
    )
    result = _run({"DINGDEE_FLOWS_FILE": str(flows)}, tmp_path)
    assert result.returncode == 2
    assert "flow 'petty-cash' mapping.fields.FDate.convert" in result.stderr


def test_bad_setting_exits_2_naming_the_variable(tmp_path: Path) -> None:
    result = _run({"DINGDEE_HTTP__PORT": "not-a-port"}, tmp_path)
    assert result.returncode == 2
    assert "DINGDEE_HTTP__PORT" in result.stderr
