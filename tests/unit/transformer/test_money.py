"""Money is exact and sane: Decimals to the last fen, sign and range checks, totals that add up.

Issue #20: ``99999999999999999999.99`` became ``1e+20``, ``-200`` and ``0`` rows were booked, and a
header total unequal to its rows went unnoticed.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from dingdee_common.codec import dumps, encode_model, loads
from dingdee_common.errors import ErrorClass, FatalError
from dingdee_common.kafka.dlq import SourceRecord
from dingdee_ops.cli.mapping import app
from dingdee_transformer.flowspec import load_compiled
from dingdee_transformer.mapping import MappingError, map_snapshot
from dingdee_transformer.metrics import TransformerMetrics
from dingdee_transformer.pipeline import DeadLetter, Processor
from tests.helpers import demo_flows_file
from tests.unit.transformer.samples import petty_form, petty_row, snapshot
from tests.unit.transformer.test_rules import comp, errors_of, make_flow, model_of

ROOT = Path(__file__).resolve().parents[3]
FLOWS = demo_flows_file()
BIG = "99999999999999999999.99"
E16 = "12345678901234567.89"
runner = CliRunner(env={"COLUMNS": "250"})


def amount(raw: Any, **rule: Any) -> Any:
    form = [comp("MoneyField", "M", "金额", raw)]
    return model_of({"A": {"component": "金额", "convert": "money", **rule}}, form)["A"]


def amount_error(raw: Any, **rule: Any) -> str:
    form = [comp("MoneyField", "M", "金额", raw)]
    (err,) = errors_of({"A": {"component": "金额", "convert": "money", **rule}}, form)
    return err


class TestExact:
    @pytest.mark.parametrize(
        ("raw", "precision", "expected"),
        [
            (BIG, 2, BIG),
            (E16, 2, E16),
            ("1,234,567,890,123,456.7", 2, "1234567890123456.70"),
            ("¥0.1", 2, "0.10"),
            ("123456789012345678", 0, "123456789012345678"),
            ("0.0000001", 7, "0.0000001"),
        ],
    )
    def test_amounts_keep_every_digit_to_the_request_bytes(
        self, raw: str, precision: int, expected: str
    ) -> None:
        value = amount(raw, precision=precision, max_abs="1e21")
        assert isinstance(value, Decimal)
        assert format(value, "f") == expected
        assert dumps({"A": value}) == f'{{"A":{expected}}}'.encode()

    def test_the_bill_message_carries_and_gives_back_the_exact_digits(self) -> None:
        flow = make_flow({"A": {"component": "金额", "convert": "money", "max_abs": "1e21"}})
        bill = map_snapshot(flow, snapshot(form=[comp("MoneyField", "M", "金额", BIG)]))
        raw = encode_model(bill)  # type: ignore[arg-type]
        assert f'"A":{BIG}'.encode() in raw
        assert loads(raw, exact=True)["model"]["A"] == Decimal(BIG)
        assert loads(raw)["model"]["A"] == 1e20  # what orjson alone would have read

    def test_more_places_than_the_precision_is_an_error_never_a_rounding(self) -> None:
        assert (
            amount_error("12.345")
            == "金额 '12.345' has more than 2 decimal places [A: convert money]"
        )

    def test_decimals_round_half_up(self) -> None:
        form = [comp("TextField", "T", "率", "0.125"), comp("TextField", "U", "差", "-0.125")]
        rules = {"component": "率", "convert": "decimal"}
        assert model_of({"A": rules, "B": {**rules, "component": "差"}}, form) == {
            "A": Decimal("0.13"),
            "B": Decimal("-0.13"),
        }

    def test_a_number_longer_than_a_decimal_holds_is_an_error(self) -> None:
        err = amount_error("1" * 40, max_abs="1e50")
        assert "has too many digits to be a number [A: convert money]" in err

    def test_a_json_number_is_taken_only_while_a_float_holds_it_exactly(self) -> None:
        assert amount(1204.5) == Decimal("1204.50")
        assert amount(Decimal(E16), max_abs="1e21") == Decimal(E16)  # read exactly: preview
        err = amount_error(float(E16), max_abs="1e21")
        assert "1.2345678901234568e+16 is a JSON number with more digits than a float holds" in err
        assert "amounts must be sent as text" in err
        assert "1e+20 is a JSON number" in amount_error(float(BIG), max_abs="1e21")


class TestSignAndRange:
    def test_negative_and_zero_money_are_rejected_by_default(self) -> None:
        assert amount_error("-200") == "金额 -200.00 must be greater than 0 [A: sign]"
        assert amount_error("0") == "金额 0.00 must be greater than 0 [A: sign]"
        assert amount_error("-0.00") == "金额 -0.00 must be greater than 0 [A: sign]"

    def test_a_flow_allows_them_explicitly(self) -> None:
        assert amount("-200", allow_negative=True, allow_zero=True) == Decimal("-200.00")
        assert amount("0", allow_zero=True) == Decimal("0.00")
        assert amount_error("-1", allow_zero=True) == "金额 -1.00 must not be negative [A: sign]"
        assert amount_error("0", allow_negative=True) == "金额 0.00 must not be 0 [A: sign]"

    def test_min_max_and_range(self) -> None:
        assert amount("50000", max=50000) == Decimal("50000.00")
        assert amount_error("50000.01", max=50000) == "金额 50000.01 must be at most 50000 [A: max]"
        assert amount_error("9.99", min="10.00") == "金额 9.99 must be at least 10.00 [A: min]"
        assert amount_error("-5", range=[-1, 1], allow_negative=True) == (
            "金额 -5.00 must be at least -1 [A: min]"
        )
        form = [comp("TextField", "T", "数量", "7")]
        (err,) = errors_of({"A": {"component": "数量", "convert": "int", "range": [1, 5]}}, form)
        assert err == "数量 7 must be at most 5 [A: max]"

    def test_magnitude_has_a_default_and_a_per_field_setting(self) -> None:
        assert amount_error(BIG) == (
            f"金额 {BIG} is beyond the largest amount allowed (±9999999999999.99) [A: max_abs]"
        )
        assert amount("9999999999999.99") == Decimal("9999999999999.99")
        assert amount_error("1000.01", max_abs=1000) == (
            "金额 1000.01 is beyond the largest amount allowed (±1000) [A: max_abs]"
        )
        err = amount_error("-1000.01", max_abs=1000, allow_negative=True)
        assert "-1000.01 is beyond the largest amount allowed (±1000)" in err

    @pytest.mark.parametrize(
        ("rule", "problem"),
        [
            ({"component": "x", "min": 1}, "min: only for convert: money, decimal or int"),
            ({"component": "x", "allow_zero": True}, "allow_zero: only for convert: money"),
            (
                {"component": "x", "convert": "money", "range": [1, 2], "max": 3},
                "use either range or min/max, not both",
            ),
            ({"component": "x", "convert": "money", "min": 3, "max": 2}, "min 3 is greater"),
            ({"component": "x", "convert": "money", "max_abs": 0}, "greater than 0"),
        ],
    )
    def test_misused_checks_fail_the_flow_check(self, rule: dict[str, Any], problem: str) -> None:
        with pytest.raises(FatalError) as caught:
            make_flow({"A": rule})
        assert "flow 'petty-cash' mapping.fields.A" in caught.value.message
        assert problem in caught.value.message


def _petty(rows: list[list[dict[str, Any]]], total: str | None = None) -> Any:
    return snapshot(form=petty_form(rows, total=total))


class TestTotals:
    def test_a_total_that_is_the_sum_of_the_rows_passes(self) -> None:
        flow = load_compiled(FLOWS)["petty-cash"]
        rows = [petty_row("纸", "办公用品", "0.10"), petty_row("票", "差旅费", "0.20")]
        bill = map_snapshot(flow, _petty(rows, total="0.30"))  # 0.1 + 0.2 != 0.3 in floats
        assert [r["FTaxSubmitAmt"] for r in bill.model["FEntity"]] == [  # type: ignore[union-attr]
            Decimal("0.10"),
            Decimal("0.20"),
        ]

    def test_a_total_that_differs_is_a_mapping_error_naming_both_sides(self) -> None:
        flow = load_compiled(FLOWS)["petty-cash"]
        rows = [petty_row("纸", "办公用品", "320.00"), petty_row("票", "差旅费", "100.00")]
        with pytest.raises(MappingError) as caught:
            map_snapshot(flow, _petty(rows, total="400.00"))
        assert str(caught.value.errors[0]) == (
            "补充金额（元） 400.00 does not equal the sum of 费用明细 金额 over 2 row(s), 420.00 "
            "[FEntity.FTaxSubmitAmt: sum_of]"
        )

    def test_rows_with_errors_are_reported_without_a_misleading_total(self) -> None:
        flow = load_compiled(FLOWS)["petty-cash"]
        rows = [petty_row("纸", "办公用品", "320.00"), petty_row("票", "差旅费", "-200")]
        with pytest.raises(MappingError) as caught:
            map_snapshot(flow, _petty(rows, total="120.00"))
        assert {e.rule for e in caught.value.errors} == {"sign"}
        assert "费用明细第2行 金额 -200.00 must be greater than 0 [FEntity[2].FTaxSubmitAmt" in (
            caught.value.message
        )

    def test_an_unreadable_total_is_an_error_of_the_total(self) -> None:
        flow = load_compiled(FLOWS)["petty-cash"]
        with pytest.raises(MappingError) as caught:
            map_snapshot(flow, _petty([petty_row("纸", "办公用品", "320.00")], total="三百"))
        assert str(caught.value.errors[0]) == (
            "补充金额（元） '三百' is not a number [checks[0].total: convert money]"
        )

    @pytest.mark.parametrize(
        ("sum_of", "problem"),
        [
            ("FX.FAmount", "FX is not a rows field of this mapping"),
            ("FEntity.FNope", "FEntity rows have no field FNope"),
            ("FEntity.FName", "FEntity.FName is not a number"),
            ("FEntity", "String should match pattern"),
        ],
    )
    def test_a_sum_of_that_names_no_amount_fails_the_flow_check(
        self, sum_of: str, problem: str
    ) -> None:
        rows = {"FName": {"cell": "项目"}, "FAmount": {"cell": "金额", "convert": "money"}}
        fields = {"FEntity": {"rows": {"table": "费用明细", "fields": rows}}}
        check = {"total": {"component": "合计", "convert": "money"}, "sum_of": sum_of}
        with pytest.raises(FatalError) as caught:
            make_flow(fields, checks=[check])
        assert "flow 'petty-cash' mapping.checks." in caught.value.message
        assert problem in caught.value.message


def test_a_record_failing_a_check_is_a_dead_letter_with_that_reason() -> None:
    processor = Processor(
        load_compiled(FLOWS),
        TransformerMetrics.create(CollectorRegistry()),
        source_topic="approvals.raw",
        bills_topic="bills.ready",
        group="transformer",
    )
    rows = [petty_row("纸", "办公用品", "320.00"), petty_row("票", "差旅费", "-200.00")]
    value = encode_model(_petty(rows, total="120.00"))
    outcome = processor.process(
        SourceRecord("approvals.raw", 0, 7, b"pi-0001", value), lambda _: None
    )
    assert isinstance(outcome, DeadLetter)
    assert outcome.verdict.error_class is ErrorClass.PERMANENT
    assert (
        "flow 'petty-cash' approval 202611031200000000123: 费用明细第2行 金额 -200.00 must be "
        "greater than 0 [FEntity[2].FTaxSubmitAmt, FEntity[2].FExpSubmitAmount, "
        "FEntity[2].FRequestAmount: sign]"
    ) in outcome.verdict.message


class TestPreview:
    def _preview(self, tmp_path: Path, instance: bytes, flows: Path = FLOWS) -> Any:
        path = tmp_path / "i.json"
        path.write_bytes(instance)
        args = ["preview", "--flow", "petty-cash", "--instance", str(path), "--flows", str(flows)]
        return runner.invoke(app, args)

    def _instance(self, amounts: list[str], total: str | None = None) -> bytes:
        rows = [petty_row(f"项{i}", "办公用品", a) for i, a in enumerate(amounts)]
        return dumps({"errcode": 0, "process_instance": _petty(rows, total).instance})

    def _roomy_flows(self, tmp_path: Path) -> Path:
        """The example flows with the row amounts' limit raised past 20 digits."""
        data = yaml.safe_load(FLOWS.read_text(encoding="utf-8"))
        rows = data["flows"][0]["mapping"]["fields"]["FEntity"]["rows"]["fields"]
        for key in ("FTaxSubmitAmt", "FExpSubmitAmount", "FRequestAmount"):
            del rows[key]["max"]
            rows[key]["max_abs"] = "1e21"
        data["flows"][0]["mapping"]["checks"][0]["total"]["max_abs"] = "1e21"
        path = tmp_path / "flows.yaml"
        text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
        path.write_text(text, encoding="utf-8")
        return path

    @pytest.mark.parametrize("raw", [BIG, E16])
    def test_huge_amounts_are_clear_errors_with_the_example_flows(
        self, tmp_path: Path, raw: str
    ) -> None:
        result = self._preview(tmp_path, self._instance([raw]))
        assert result.exit_code == 1
        out = " ".join(result.output.split())
        assert f"费用明细第1行 金额 │ {raw} must be at most 50000 │ max" in out

    @pytest.mark.parametrize("raw", [BIG, E16])
    def test_huge_amounts_print_exactly_where_a_flow_allows_them(
        self, tmp_path: Path, raw: str
    ) -> None:
        result = self._preview(tmp_path, self._instance([raw]), self._roomy_flows(tmp_path))
        assert result.exit_code == 0, result.output
        assert re.search(f'"FTaxSubmitAmt": {re.escape(raw)}[,\n]', result.stdout)
        assert "e+" not in result.stdout
        request = loads(result.stdout[result.stdout.index("{") :], exact=True)
        assert request["data"]["Model"]["FEntity"][0]["FRequestAmount"] == Decimal(raw)

    def test_an_amount_written_as_a_json_number_is_read_exactly(self, tmp_path: Path) -> None:
        text = self._instance([E16]).decode()
        instance = text.replace(f'"value":"{E16}"', f'"value":{E16}', 1)  # the form's total
        assert instance != text
        result = self._preview(tmp_path, instance.encode(), self._roomy_flows(tmp_path))
        assert result.exit_code == 0, result.output
        assert re.search(f'"FTaxSubmitAmt": {re.escape(E16)}[,\n]', result.stdout)

    def test_a_json_number_a_float_cannot_hold_is_refused(self, tmp_path: Path) -> None:
        # inside a table's JSON text, decoded (as DingTalk sends only text) by orjson: a float
        text = self._instance(["320.00"], total=E16).decode()
        instance = text.replace('\\"value\\": \\"320.00\\"', f'\\"value\\": {E16}', 1)
        assert instance != text
        result = self._preview(tmp_path, instance.encode(), self._roomy_flows(tmp_path))
        assert result.exit_code == 1
        out = " ".join(result.output.split())
        assert "1.2345678901234568e+16 is a JSON number with more digits than a float" in out

    @pytest.mark.parametrize(
        ("amounts", "total", "problem"),
        [
            (
                ["320.00", "-200.00"],
                "120.00",
                "费用明细第2行 金额 │ -200.00 must be greater than 0",
            ),
            (["0"], None, "费用明细第1行 金额 │ 0.00 must be greater than 0"),
            (["320.00", "100"], "400.00", "400.00 does not equal the sum of 费用明细 金额"),
        ],
    )
    def test_insane_amounts_exit_1_with_the_reason(
        self, tmp_path: Path, amounts: list[str], total: str | None, problem: str
    ) -> None:
        result = self._preview(tmp_path, self._instance(amounts, total))
        assert result.exit_code == 1
        assert problem in " ".join(result.output.split())
