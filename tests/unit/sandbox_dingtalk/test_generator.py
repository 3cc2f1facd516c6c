"""Demo form values in DingTalk's read format (contract §3.4, /forms)."""

from __future__ import annotations

import random
import re
from decimal import Decimal

import orjson
import pytest

from dingdee_sandbox.demo_org import DEPARTMENTS, EXPENSE_TYPES
from dingdee_sandbox.dingtalk.generator import (
    department_form,
    instance_id,
    petty_cash_form,
    upper_amount,
)


@pytest.mark.parametrize(
    ("amount", "upper"),
    [
        ("1536.50", "壹仟伍佰叁拾陆元伍角"),
        ("150", "壹佰伍拾元整"),
        ("1005.07", "壹仟零伍元零柒分"),
        ("10500", "壹万零伍佰元整"),
        ("100000.01", "壹拾万元零壹分"),
        ("0.30", "叁角"),
        ("0", "零元整"),
    ],
)
def test_upper_amount(amount: str, upper: str) -> None:
    assert upper_amount(Decimal(amount)) == upper


def _by_id(form: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {c["id"]: c for c in form}


class TestPettyCash:
    def test_components_in_order_with_string_values(self) -> None:
        form = petty_cash_form(random.Random(1), "2026-11-03", ("u1", "张伟"))
        assert [c["id"] for c in form] == [
            "TextField_BYJ01",
            "DDSelectField_BYJ02",
            "MoneyField_BYJ03",
            "DDDateField_BYJ04",
            "DDSelectField_BYJ05",
            "TableField_BYJ06",
            "TextareaField_BYJ07",
            "DDAttachment_BYJ08",
            "InnerContactField_BYJ09",
        ]
        assert all(isinstance(c["value"], str) for c in form)
        assert all(c["id"].startswith(c["component_type"]) for c in form)

    def test_amount_is_the_sum_of_the_rows_and_rows_are_json_in_a_string(self) -> None:
        for seed in range(30):
            c = _by_id(petty_cash_form(random.Random(seed), "2026-11-03", ("u1", "张伟")))
            rows = orjson.loads(c["TableField_BYJ06"]["value"])
            assert 1 <= len(rows) <= 4
            cells = [{cell["key"]: cell for cell in row["rowValue"]} for row in rows]
            total = sum((Decimal(r["MoneyField_BYJ063"]["value"]) for r in cells), Decimal(0))
            assert c["MoneyField_BYJ03"]["value"] == f"{total:.2f}"
            assert re.fullmatch(r"\d+\.\d\d", c["MoneyField_BYJ03"]["value"])
            assert all(r["DDSelectField_BYJ062"]["value"] in EXPENSE_TYPES for r in cells)
            assert all(row["rowNumber"].startswith("TableField_BYJ06_") for row in rows)
            ext = orjson.loads(c["MoneyField_BYJ03"]["ext_value"])
            assert ext == {"upper": upper_amount(total), "componentName": "MoneyField"}
            table_ext = orjson.loads(c["TableField_BYJ06"]["ext_value"])
            assert table_ext == {"statValue": [], "componentName": "TableField"}

    def test_selects_contacts_attachments_and_null_empties(self) -> None:
        forms = [
            _by_id(petty_cash_form(random.Random(s), "2026-11-03", ("u9", "李娜")))
            for s in range(40)
        ]
        for c in forms:
            kind = c["DDSelectField_BYJ02"]
            assert kind["value"] in EXPENSE_TYPES
            assert orjson.loads(kind["ext_value"])["label"] == kind["value"]
            assert c["DDSelectField_BYJ05"]["value"] in ("现金", "银行转账")
            contact = c["InnerContactField_BYJ09"]
            assert contact["value"] == "李娜"
            assert orjson.loads(contact["ext_value"])[0]["emplId"] == "u9"
        notes = {c["TextareaField_BYJ07"]["value"] for c in forms}
        files = [c["DDAttachment_BYJ08"]["value"] for c in forms]
        assert "null" in notes and len(notes) > 1
        assert "null" in files
        parsed = [orjson.loads(f) for f in files if f != "null"]
        assert parsed and all(set(p[0]) >= {"spaceId", "fileName", "fileId"} for p in parsed)

    def test_zero_rows_give_the_column_definition_quirk(self) -> None:
        c = _by_id(petty_cash_form(random.Random(1), "2026-11-03", ("u1", "张伟"), 0))
        table = c["TableField_BYJ06"]
        columns = orjson.loads(table["value"])
        assert "ext_value" not in table
        assert columns and all("rowValue" not in col and "props" in col for col in columns)
        assert c["MoneyField_BYJ03"]["value"] == "0.00"


def test_department_form() -> None:
    c = _by_id(department_form(random.Random(3), "2026-11-03", "BM009001"))
    assert c["TextField_DEP02"]["value"] == "BM009001"
    assert c["DDSelectField_DEP03"]["value"] in {d.name for d in DEPARTMENTS}
    assert c["DDSelectField_DEP04"]["value"] in ("管理部门", "销售部门", "研发部门", "生产部门")
    assert c["DDDateField_DEP05"]["value"] == "2026-11-03"


def test_instance_id_embeds_the_creation_epoch() -> None:
    pid = instance_id(random.Random(1), 1_717_403_597_123)
    assert len(pid) == 36 and pid.endswith("1717403597")
    assert re.fullmatch(r"[A-Za-z0-9]{22}\d{14}", pid)
