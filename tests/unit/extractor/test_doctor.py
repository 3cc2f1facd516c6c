"""The doctor's pure parts: the budget verdict and the schema comparison (no network)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from dingdee_common.doctor import AppPlan, Check, budget_check, exit_code, startup_verdict
from dingdee_common.errors import FatalError
from dingdee_extractor.schemacheck import component_checks, schema_components
from dingdee_transformer.reads import FormRead

PLAN = AppPlan(
    app="main",
    flows=2,
    events=True,
    interval_s=12 * 3600.0,
    max_interval_s=24 * 3600.0,
    sweep_interval_s=24 * 3600.0,
    approvals_per_month=1000,
    budget=5000,
)


class TestBudgetCheck:
    def test_events_fit_the_standard_allowance(self) -> None:
        check = budget_check(PLAN)
        assert check.level == "ok", check.line()
        assert "budget 5,000 (90% = 4,500)" in check.message

    def test_fast_polling_fits_only_once_stretched(self) -> None:
        check = budget_check(replace(PLAN, events=False, interval_s=30.0, approvals_per_month=300))
        assert check.level == "warning", check.line()
        assert "the extractor stretches polling to every" in check.message

    def test_approvals_alone_over_the_budget_are_an_error_unless_allowed(self) -> None:
        # 5 000 approvals cost at least a get each: more than 4 500 however far polling stretches
        over = replace(PLAN, events=False, interval_s=30.0, approvals_per_month=5000)
        check = budget_check(over)
        assert check.level == "error" and "even polling every 24.0 h projects" in check.message
        assert "enable events" in check.message
        allowed = budget_check(replace(over, allow_over_budget=True))
        assert allowed.level == "warning" and "allowed over budget" in allowed.message

    def test_startup_verdict_names_the_first_error_and_counts_the_rest(self) -> None:
        ok = Check("quota", "main", "monthly budget", "ok", "fits")
        bad = [Check("dingtalk", f"f{i}", "process_code", "error", "typo") for i in range(3)]
        startup_verdict("extractor", [ok])
        assert exit_code([ok]) == 0 and exit_code([ok, *bad]) == 1
        with pytest.raises(FatalError, match=r"dingtalk/f0: process_code: typo \(\+2 more"):
            startup_verdict("extractor", [ok, *bad])


def item(kind: str, cid: str, label: str, children: list[Any] | None = None) -> dict[str, Any]:
    return {"componentName": kind, "props": {"id": cid, "label": label}, "children": children}


SCHEMA = {
    "name": "报销",
    "status": "PUBLISHED",
    "gmtModified": "1640344585000",
    "schemaContent": {
        "items": [
            item("FieldGroup", "G1", "分组", [item("MoneyField", "M1", "金额")]),
            item("TextField", "T1", "事由"),
            item("TextField", "T2", "事由"),
            item("DDSelectField", "S1", "类型"),
            item("TableField", "TB", "明细", [item("NumberField", "N1", "数量")]),
        ]
    },
}


def reads(*specs: tuple[str, str | None, str, str]) -> list[FormRead]:
    return [FormRead(n, t, p, c, f"mapping.fields.F{i}") for i, (n, t, p, c) in enumerate(specs)]


class TestComponentChecks:
    def test_layout_groups_are_walked_and_table_children_are_columns(self) -> None:
        found = {(c.id, c.table) for c in schema_components(SCHEMA)}
        assert ("M1", None) in found and ("N1", "TB") in found

    def test_compatible_reads_give_one_ok_line(self) -> None:
        ok = reads(
            ("金额", None, "value", "money"),
            ("T1", None, "value", "text"),
            ("S1", None, "key", "text"),
            ("明细", None, "rows", "raw"),
            ("数量", "明细", "value", "int"),
        )
        [check] = component_checks("f", "PROC-1", SCHEMA, ok)
        assert check.level == "ok" and "5 read(s) found" in check.message

    def test_each_problem_is_one_line(self) -> None:
        bad = reads(
            ("事由", None, "value", "text"),  # two components carry the label
            ("类型", None, "value", "money"),  # a select read as money
            ("T1", None, "value", "date"),  # free text read as a date: may fail per record
            ("明细", None, "value", "text"),  # a table read as a value
            ("单价", "明细", "value", "money"),  # no such column
        )
        checks = component_checks("f", "PROC-1", SCHEMA, bad)
        assert [(c.name, c.level) for c in checks] == [
            ("component 事由", "error"),
            ("component 类型", "error"),
            ("component T1", "warning"),
            ("component 明细", "error"),
            ("column 明细/单价", "error"),
        ]
        assert "ambiguous (T1, T2)" in checks[0].message
        assert "(it has: 数量)" in checks[4].message

    def test_a_template_not_published_is_a_warning(self) -> None:
        checks = component_checks("f", "PROC-1", {**SCHEMA, "status": "INVALID"}, [])
        assert [(c.name, c.level) for c in checks] == [
            ("template status", "warning"),
            ("form components", "ok"),
        ]
