"""``dingdee mapping check`` and ``dingdee mapping preview`` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from dingdee_ops.cli.mapping import app
from tests.helpers import demo_flows_file
from tests.unit.transformer.samples import petty_form, petty_row, snapshot

ROOT = Path(__file__).resolve().parents[3]
FLOWS = demo_flows_file()
runner = CliRunner(env={"COLUMNS": "250"})


def _write(tmp_path: Path, name: str, data: object) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


class TestCheck:
    def test_example_flows_pass(self) -> None:
        result = runner.invoke(app, ["check", str(FLOWS)])
        assert result.exit_code == 0, result.output
        assert "2 flow(s) OK" in result.output

    def _check(self, tmp_path: Path, data: dict[str, Any]) -> tuple[int, str]:
        path = tmp_path / "flows.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        result = runner.invoke(app, ["check", str(path)])
        return result.exit_code, " ".join(result.output.split())

    def test_broken_flow_fails_with_flow_and_key_path(self, tmp_path: Path) -> None:
        data = yaml.safe_load(FLOWS.read_text(encoding="utf-8"))
        fields = data["flows"][0]["mapping"]["fields"]
        fields["FDate"] = {"attr": "create_time", "convert": "dat"}
        fields["FX"] = {"componnt": "补单事由"}
        fields["FEntity"]["rows"]["fields"]["FY"] = {"cell": "金额", "attr": "title"}
        del data["flows"][1]["target"]["form_id"]
        code, out = self._check(tmp_path, data)
        assert code == 1
        assert "flow 'petty-cash' mapping.fields.FDate.convert: Input should be 'text'" in out
        assert "flow 'petty-cash' mapping.fields.FX.componnt: Extra inputs" in out
        assert "mapping.fields.FEntity.rows.fields.FY: Value error, give exactly one source" in out
        assert "flow 'department-sync' target.form_id: Field required" in out

    def test_lookup_of_an_undeclared_table(self, tmp_path: Path) -> None:
        data = yaml.safe_load(FLOWS.read_text(encoding="utf-8"))
        rows = data["flows"][0]["mapping"]["fields"]["FEntity"]["rows"]["fields"]
        rows["FExpID"] = {"cell": "费用类型", "lookup": "expense_typos"}
        code, out = self._check(tmp_path, data)
        assert code == 1
        assert (
            "flow 'petty-cash' mapping.fields.FEntity.rows.fields.FExpID.lookup: "
            "no reference table 'expense_typos'" in out
        )


class TestPreview:
    def test_raw_get_response_prints_the_save_request(self, tmp_path: Path) -> None:
        inst = _write(tmp_path, "i.json", {"errcode": 0, "process_instance": snapshot().instance})
        result = runner.invoke(
            app, ["preview", "--flow", "petty-cash", "--instance", str(inst), "--flows", str(FLOWS)]
        )
        assert result.exit_code == 0, result.output
        start = result.stdout.index("{")
        request = json.loads(result.stdout[start:])
        assert request["formid"] == "ER_ExpReimbursement"
        assert request["data"]["Model"]["FBillNo"] == "BYJ202611031200000000123"
        assert request["data"]["IsVerifyBaseDataField"] is True

    def test_snapshot_with_errors_exits_1_listing_them(self, tmp_path: Path) -> None:
        bad = snapshot(form=petty_form([petty_row("b", "差旅费", "12,3a")]), userid="ghost")
        inst = _write(tmp_path, "i.json", bad.model_dump(mode="json"))
        result = runner.invoke(
            app, ["preview", "--flow", "petty-cash", "--instance", str(inst), "--flows", str(FLOWS)]
        )
        assert result.exit_code == 1
        out = " ".join(result.output.split())
        assert "is not a number" in out and "lookup staff" in out

    def test_running_approval_is_skipped(self, tmp_path: Path) -> None:
        inst = _write(tmp_path, "i.json", snapshot(status="RUNNING", result=None).instance)
        result = runner.invoke(
            app, ["preview", "--flow", "petty-cash", "--instance", str(inst), "--flows", str(FLOWS)]
        )
        assert result.exit_code == 3
        assert "skipped" in result.output

    def test_unknown_flow(self, tmp_path: Path) -> None:
        inst = _write(tmp_path, "i.json", {})
        result = runner.invoke(
            app, ["preview", "--flow", "nope", "--instance", str(inst), "--flows", str(FLOWS)]
        )
        assert result.exit_code == 1
        assert "no flow 'nope'" in result.output


class TestHostileText:
    """Form values are typed by anyone: no raw control character or markup reaches the terminal."""

    HOSTILE = "x\x1b[2J\x00\u202e[red]y[/]\x9b"

    @staticmethod
    def _assert_safe(text: str) -> None:
        controls = [c for c in text if (ord(c) < 0x20 and c not in "\n\r") or 0x7F <= ord(c) < 0xA0]
        assert not controls, f"raw control characters reached the terminal: {controls!r}"
        assert "\u202e" not in text

    def test_preview_of_a_bill_escapes_values(self, tmp_path: Path) -> None:
        inst = snapshot(form=petty_form([petty_row(self.HOSTILE, "差旅费", "12.30")]))
        path = _write(tmp_path, "i.json", {"errcode": 0, "process_instance": inst.instance})
        result = runner.invoke(
            app, ["preview", "--flow", "petty-cash", "--instance", str(path), "--flows", str(FLOWS)]
        )
        assert result.exit_code == 0, result.output
        self._assert_safe(result.output)
        assert "[red]y[/]" in result.output  # shown literally, not read as markup
        assert "\\u202e" in result.output or "\\\\u202e" in result.output

    def test_preview_errors_escape_values(self, tmp_path: Path) -> None:
        bad = snapshot(form=petty_form([petty_row("b", "差旅费", self.HOSTILE)]))
        path = _write(tmp_path, "i.json", bad.model_dump(mode="json"))
        result = runner.invoke(
            app, ["preview", "--flow", "petty-cash", "--instance", str(path), "--flows", str(FLOWS)]
        )
        assert result.exit_code == 1
        self._assert_safe(result.output)
        assert "\\x1b" in result.output

    def test_unknown_flow_name_is_escaped(self, tmp_path: Path) -> None:
        path = _write(tmp_path, "i.json", {})
        result = runner.invoke(
            app, ["preview", "--flow", self.HOSTILE, "--instance", str(path), "--flows", str(FLOWS)]
        )
        assert result.exit_code == 1
        self._assert_safe(result.output)
