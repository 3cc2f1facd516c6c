"""Every rule kind of the mapping language, on small inline flows."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, ClassVar

import pytest

from dingdee_common.contracts.v1 import BillReady
from dingdee_common.errors import FatalError
from dingdee_common.flows import FlowsFile
from dingdee_transformer.encodings import FormError, parse_form
from dingdee_transformer.flowspec import CompiledFlow, compile_flows
from dingdee_transformer.mapping import MappingError, Skip, map_snapshot
from tests.unit.transformer.samples import petty_form, petty_row, snapshot, table_value

TABLES = {"staff": {"u1": "EMP1"}, "types": {"办公用品": "FY01", "差旅费": "FY02"}}


def make_flow(
    fields: dict[str, Any],
    *,
    tables: dict[str, dict[str, str]] | None = None,
    bill_key: str = "K{business_id}",
    **mapping: Any,
) -> CompiledFlow:
    data = {
        "timezone": "Asia/Shanghai",
        "reference_tables": TABLES if tables is None else tables,
        "flows": [
            {
                "id": "petty-cash",
                "dingtalk": {"process_code": "P"},
                "target": {"form_id": "F", "bill_key": bill_key},
                "mapping": {"fields": fields, **mapping},
            }
        ],
    }
    return compile_flows(FlowsFile.model_validate(data))["petty-cash"]


def comp(ctype: str, cid: str, name: Any, value: Any, ext: Any = None) -> dict[str, Any]:
    out = {"component_type": ctype, "id": cid, "name": name, "value": value}
    if ext is not None:
        out["ext_value"] = ext if isinstance(ext, str) else json.dumps(ext, ensure_ascii=False)
    return out


def model_of(fields: dict[str, Any], form: list[dict[str, Any]] | None = None, **kw: Any) -> Any:
    result = map_snapshot(make_flow(fields), snapshot(form=form if form is not None else [], **kw))
    assert isinstance(result, BillReady), result
    return {k: v for k, v in result.model.items() if k != "FBillNo"}


def errors_of(
    fields: dict[str, Any], form: list[dict[str, Any]] | None = None, **kw: Any
) -> list[str]:
    with pytest.raises(MappingError) as caught:
        map_snapshot(make_flow(fields), snapshot(form=form if form is not None else [], **kw))
    return [str(e) for e in caught.value.errors]


class TestSources:
    def test_component_by_chinese_label_and_by_id(self) -> None:
        form = [comp("TextField", "TextField_X1", "事由", "出差")]
        fields = {"A": {"component": "事由"}, "B": {"component": "TextField_X1"}}
        assert model_of(fields, form) == {"A": "出差", "B": "出差"}

    def test_ambiguous_label_asks_for_the_id(self) -> None:
        form = [comp("TextField", "T1", "备注", "a"), comp("TextField", "T2", "备注", "b")]
        (err,) = errors_of({"A": {"component": "备注"}}, form)
        assert "label '备注' is ambiguous (T1, T2); use the component id" in err

    def test_a_flow_indexes_only_the_components_it_reads(self) -> None:
        flow = make_flow(
            {
                "A": {"component": "事由"},
                "B": {"template": "{form:T9}-{business_id}"},
                "E": {"rows": {"table": "明细", "fields": {"X": {"cell": "金额"}}}},
            },
            bill_key="K{form:编号}",
        )
        assert flow.form_names == {"事由", "T9", "明细", "编号"}
        form = [
            comp("TextField", "T1", "事由", "a"),
            comp("TextField", "T2", "事由", "b"),  # still ambiguous
            comp("TextField", "T9", "备注", "c"),  # by id
            comp("TextField", "T3", "无关", "d"),
        ]
        parsed = parse_form(form, flow.form_names)
        assert sorted(parsed.by_id) == ["T1", "T2", "T9"]
        assert parsed.find("T9") is not None
        assert parsed.find("无关") is None
        with pytest.raises(FormError, match="ambiguous"):
            parsed.find("事由")

    def test_missing_component_optional_is_omitted_required_is_error(self) -> None:
        assert model_of({"A": {"component": "不存在"}}) == {}
        (err,) = errors_of({"A": {"component": "不存在", "required": True}})
        assert err == "不存在 is missing from the form [A: component]"

    def test_instance_attributes(self) -> None:
        fields = {
            "U": {"attr": "originator_userid"},
            "T": {"attr": "finish_time", "convert": "datetime"},
            "P": {"attr": "process_instance_id"},
        }
        assert model_of(fields) == {
            "U": "0123456789012347",
            "T": "2026-11-04 09:10:02",
            "P": "pi-0001",
        }

    def test_constants_scalar_object_and_explicit(self) -> None:
        fields = {"A": 0, "B": {"FNumber": "100"}, "C": {"const": {"x": 1}}, "D": [1, 2]}
        assert model_of(fields) == {"A": 0, "B": {"FNumber": "100"}, "C": {"x": 1}, "D": [1, 2]}

    def test_template(self) -> None:
        form = [comp("TextField", "T1", "事由", " 补货 ")]
        fields = {"A": {"template": "{form:事由} / 钉钉审批 {business_id}"}}
        assert model_of(fields, form) == {"A": "补货 / 钉钉审批 202611031200000000123"}

    def test_template_with_empty_placeholder(self) -> None:
        (err,) = errors_of({"A": {"template": "x{form:事由}"}})
        assert "placeholder {form:事由} is empty" in err

    def test_bill_key_template_and_number_field_first(self) -> None:
        flow = make_flow({"FID": 0, "X": 1}, bill_key="BYJ-{business_id}")
        bill = map_snapshot(flow, snapshot(form=[]))
        assert isinstance(bill, BillReady)
        assert list(bill.model) == ["FID", "FBillNo", "X"]
        assert bill.bill_key == bill.model["FBillNo"] == "BYJ-202611031200000000123"


class TestSteps:
    def test_value_map_with_default_and_without(self) -> None:
        form = [comp("DDSelectField", "S", "支付方式", "支票")]
        mapped = {"A": {"component": "支付方式", "map": {"现金": "C"}, "map_default": "OTHER"}}
        assert model_of(mapped, form) == {"A": "OTHER"}
        (err,) = errors_of({"A": {"component": "支付方式", "map": {"现金": "C"}}}, form)
        assert err == "支付方式 '支票' is not one of: 现金 [A: map]"

    def test_lookup_as_reference(self) -> None:
        fields = {"A": {"attr": "originator_userid", "lookup": "staff", "ref": "FSTAFFNUMBER"}}
        assert model_of(fields, userid="u1") == {"A": {"FSTAFFNUMBER": "EMP1"}}

    def test_missing_lookup_is_an_error_or_default(self) -> None:
        fields: dict[str, Any] = {"A": {"attr": "originator_userid", "lookup": "staff"}}
        (err,) = errors_of(fields, userid="u9")
        assert err == "originator_userid 'u9' is not in reference table 'staff' [A: lookup staff]"
        fields["A"]["lookup_default"] = "EMP0"
        assert model_of(fields, userid="u9") == {"A": "EMP0"}

    def test_null_literal_default_and_required(self) -> None:
        form = [comp("TextareaField", "T", "备注", "null")]
        assert model_of({"A": {"component": "备注"}}, form) == {}
        assert model_of({"A": {"component": "备注", "default": "无"}}, form) == {"A": "无"}
        (err,) = errors_of({"A": {"component": "备注", "required": True}}, form)
        assert err == "备注 is required but empty [A: required]"

    def test_trimming(self) -> None:
        form = [comp("TextField", "T", "名称", "  华南  ")]
        assert model_of({"A": {"component": "名称"}}, form) == {"A": "华南"}
        assert model_of({"A": {"component": "名称", "trim": False}}, form) == {"A": "  华南  "}

    def test_pattern_and_max_length(self) -> None:
        form = [comp("TextField", "T", "编码", "XX-1")]
        (err,) = errors_of({"A": {"component": "编码", "pattern": r"BM\d{6}"}}, form)
        assert "'XX-1' does not match BM\\d{6}" in err
        (err,) = errors_of({"A": {"component": "编码", "max_length": 2}}, form)
        assert "is longer than 2 characters" in err

    @pytest.mark.parametrize(
        ("kind", "raw", "expected"),
        [
            ("money", "1,234.50", Decimal("1234.50")),
            ("money", "¥1234.5", Decimal("1234.50")),
            ("money", "￥ 8", Decimal("8.00")),
            ("decimal", "3.14159", Decimal("3.14")),
            ("int", "42", 42),
            ("bool", "是", True),
            ("bool", "false", False),
            ("date", "2026-11-03", "2026-11-03 00:00:00"),
            ("date", "2026-11-03 07:30", "2026-11-03 00:00:00"),
            ("datetime", "2026-11-03 07:30", "2026-11-03 07:30:00"),
            ("datetime", "2026-11-03T01:00:00Z", "2026-11-03 09:00:00"),
            ("datetime", "1793667600000", "2026-11-03 09:00:00"),
            ("money", "1234元", Decimal("1234.00")),
            ("raw", "x", "x"),
        ],
    )
    def test_conversions(self, kind: str, raw: str, expected: Any) -> None:
        form = [comp("TextField", "T", "值", raw)]
        got = model_of({"A": {"component": "值", "convert": kind}}, form)
        assert got == {"A": expected}
        assert repr(got["A"]) == repr(expected)  # a Decimal with every place, never a float

    @pytest.mark.parametrize(
        ("kind", "raw", "problem"),
        [
            ("money", "12,3a", "'12,3a' is not a number"),
            ("money", "1,23", "'1,23' is not a number"),
            ("money", "1.005", "'1.005' has more than 2 decimal places"),
            ("int", "1.5", "'1.5' is not a whole number"),
            ("bool", "也许", "'也许' is not a yes/no value"),
            ("date", "2026/13/01", "'2026/13/01' is not a date"),
            ("date", "明天", "'明天' is not a date"),
        ],
    )
    def test_bad_values(self, kind: str, raw: str, problem: str) -> None:
        form = [comp("TextField", "T", "值", raw)]
        (err,) = errors_of({"A": {"component": "值", "convert": kind}}, form)
        assert err.startswith(f"值 {problem}")
        assert err.endswith(f"[A: convert {kind}]")


class TestEncodings:
    def test_select_key_and_label(self) -> None:
        form = [comp("DDSelectField", "S", "类别", "差旅", {"label": "差旅", "key": "option_2"})]
        fields = {"L": {"component": "类别"}, "K": {"component": "类别", "pick": "key"}}
        assert model_of(fields, form) == {"L": "差旅", "K": "option_2"}

    def test_contact_field_names_in_value_ids_in_ext(self) -> None:
        ext = [{"emplId": "u1", "name": "张伟"}, {"emplId": "u2", "name": "王芳"}]
        form = [comp("InnerContactField", "C", "经办人", "张伟,王芳", ext)]
        fields = {
            "U": {"component": "经办人", "pick": "userid", "lookup": "staff", "ref": "FNumber"},
            "N": {"component": "经办人", "pick": "name"},
            "A": {"component": "经办人", "pick": "userids"},
        }
        assert model_of(fields, form) == {"U": {"FNumber": "EMP1"}, "N": "张伟", "A": "u1,u2"}

    def test_date_range_with_json_labels(self) -> None:
        value = json.dumps(["2026-02-25", "2026-02-26", None])
        form = [comp("DDDateRangeField", "R", '["开始时间","结束时间"]', value)]
        fields = {
            "S": {"component": "开始时间", "pick": "start", "convert": "date"},
            "E": {"component": "R", "pick": "end", "convert": "date"},
        }
        assert model_of(fields, form) == {"S": "2026-02-25 00:00:00", "E": "2026-02-26 00:00:00"}

    def test_attachments_json_in_string_and_null(self) -> None:
        files = [{"fileName": "发票.pdf", "fileId": "1"}, {"fileName": "清单.xlsx", "fileId": "2"}]
        fields = {
            "N": {"component": "附件", "pick": "file_names"},
            "C": {"component": "附件", "pick": "count", "convert": "int"},
        }
        form = [comp("DDAttachment", "A", "附件", json.dumps(files, ensure_ascii=False))]
        assert model_of(fields, form) == {"N": "发票.pdf,清单.xlsx", "C": 2}
        empty = [comp("DDAttachment", "A", "附件", "null")]
        assert model_of(fields, empty) == {"C": 0}

    def test_bad_json_in_attachment_is_a_field_error(self) -> None:
        form = [comp("DDAttachment", "A", "附件", '[{"fileName": ')]
        (err,) = errors_of({"N": {"component": "附件", "pick": "file_names"}}, form)
        assert err.startswith("附件 is not valid JSON")


class TestRows:
    ROWS: ClassVar[dict[str, Any]] = {
        "E": {
            "rows": {
                "table": "费用明细",
                "min_rows": 1,
                "max_rows": 3,
                "fields": {
                    "Seq": {"template": "{row}"},
                    "Exp": {"cell": "费用类型", "lookup": "types", "ref": "FNUMBER"},
                    "Amt": {"cell": "MoneyField_BYJ063", "convert": "money"},
                    "Note": {"template": "{cell:项目}/{business_id}"},
                },
            }
        }
    }

    def test_table_rows_become_entry_rows(self) -> None:
        rows = [petty_row("纸", "办公用品", "1,000"), petty_row("票", "差旅费", "2.5")]
        assert model_of(self.ROWS, petty_form(rows))["E"] == [
            {
                "Seq": "1",
                "Exp": {"FNUMBER": "FY01"},
                "Amt": 1000.0,
                "Note": "纸/202611031200000000123",
            },
            {
                "Seq": "2",
                "Exp": {"FNUMBER": "FY02"},
                "Amt": 2.5,
                "Note": "票/202611031200000000123",
            },
        ]

    def test_per_row_errors_name_the_row(self) -> None:
        rows = [petty_row("纸", "办公用品", "1"), petty_row("x", "美容", "abc")]
        errs = errors_of(self.ROWS, petty_form(rows))
        assert errs == [
            "费用明细第2行 费用类型 '美容' is not in reference table 'types' "
            "[E[2].Exp: lookup types]",
            "费用明细第2行 MoneyField_BYJ063 'abc' is not a number [E[2].Amt: convert money]",
        ]

    def test_row_count_limits(self) -> None:
        (err,) = errors_of(self.ROWS, petty_form([petty_row("a", "办公用品", "1")] * 4))
        assert "费用明细 has 4 rows, at most 3 allowed" in err
        (err,) = errors_of(self.ROWS, petty_form(table_raw="null"))
        assert "has 0 rows, at least 1 needed" in err

    def test_table_value_that_is_not_rows(self) -> None:
        (err,) = errors_of(self.ROWS, petty_form(table_raw='{"a": 1}'))
        assert "费用明细 is not a list of table rows" in err
        (err,) = errors_of(self.ROWS, petty_form(table_raw=table_value([[]])[:-5]))
        assert "is not valid JSON" in err


class TestQualifyAndConfig:
    def test_qualify_is_configurable(self) -> None:
        flow = make_flow({"A": 1}, qualify={"status": ["COMPLETED"], "result": ["agree", "refuse"]})
        assert isinstance(map_snapshot(flow, snapshot(result="refuse")), BillReady)
        assert isinstance(map_snapshot(flow, snapshot(status="RUNNING")), Skip)

    def test_linked_change_may_be_skipped_or_mapped(self) -> None:
        skip = make_flow({"A": 1}, on_linked_change="skip")
        assert isinstance(map_snapshot(skip, snapshot(biz_action="MODIFY")), Skip)
        mapped = make_flow({"A": 1}, on_linked_change="map")
        assert isinstance(map_snapshot(mapped, snapshot(biz_action="REVOKE")), BillReady)

    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            ({"A": {"component": "x", "attr": "y"}}, "give exactly one source"),
            ({"A": {"component": "x", "map": {}, "lookup": "staff"}}, "either map or lookup"),
            ({"A": {"component": "x", "pattern": "("}}, "not a valid regular expression"),
            ({"A": {"template": "no placeholder"}}, "template has no {placeholder}"),
            ({"A": {"rows": {"table": "t", "fields": {"B": {"component": "x"}}}}}, "inside rows"),
            ({"A": {"component": "x", "lookup": "nope"}}, "no reference table 'nope'"),
        ],
    )
    def test_bad_rules_fail_at_start(self, fields: dict[str, Any], message: str) -> None:
        with pytest.raises(FatalError, match=message) as caught:
            make_flow(fields)
        assert "flow 'petty-cash' mapping.fields.A" in str(caught.value)

    def test_bad_timezone(self) -> None:
        data = {"timezone": "Mars/Olympus", "flows": []}
        with pytest.raises(FatalError, match="unknown time zone 'Mars/Olympus'"):
            compile_flows(FlowsFile.model_validate(data))
