"""Approval snapshots shaped like the demo forms of the DingTalk sandbox (dingtalk.md §3.4)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from dingdee_common.contracts.v1 import ApprovalSnapshot

PETTY_CODE = "PROC-BYJ-7F3A2C91"
DEPT_CODE = "PROC-DEPT-5B8E1D04"


def cell(ctype: str, label: str, key: str, value: str) -> dict[str, Any]:
    return {"componentType": ctype, "label": label, "value": value, "key": key}


def petty_row(item: str, etype: str, amount: str, day: str = "2026-11-02") -> list[dict[str, Any]]:
    return [
        cell("TextField", "项目", "TextField_BYJ061", item),
        cell("DDSelectField", "费用类型", "DDSelectField_BYJ062", etype),
        cell("MoneyField", "金额", "MoneyField_BYJ063", amount),
        cell("DDDateField", "日期", "DDDateField_BYJ064", day),
    ]


def table_value(rows: list[list[dict[str, Any]]]) -> str:
    return json.dumps(
        [{"rowValue": r, "rowNumber": f"TableField_BYJ06_r{i}"} for i, r in enumerate(rows)],
        ensure_ascii=False,
    )


EMPTY_TABLE_VALUE = json.dumps(
    [
        {
            "componentName": "TextField",
            "componentType": "TextField",
            "props": {"id": "TextField_BYJ061", "label": "项目", "required": True},
        }
    ],
    ensure_ascii=False,
)


def _sum_of_amounts(rows: list[list[dict[str, Any]]]) -> str:
    """The 金额 cells added up, whatever currency noise they carry (``¥1,204.50``)."""
    try:
        amounts = [
            Decimal(re.sub(r"[^\d.+-]", "", str(c["value"])))
            for r in rows
            for c in r
            if c["label"] == "金额"
        ]
    except (InvalidOperation, KeyError, TypeError):
        return "320.00"  # rows a test made unreadable on purpose: the total does not matter
    return f"{sum(amounts, Decimal(0)):.2f}"


def petty_form(
    rows: list[list[dict[str, Any]]] | None = None,
    *,
    pay: str = "现金",
    reason: str = "11月行政部备用金补充",
    total: str | None = None,
    table_raw: str | None = None,
) -> list[dict[str, Any]]:
    rows = rows if rows is not None else [petty_row("打印纸", "办公用品", "320.00")]
    if total is None:  # the form's own total: DingTalk's sum of the 金额 column, when it adds up
        total = _sum_of_amounts(rows)
    return [
        {
            "component_type": "TextField",
            "id": "TextField_BYJ01",
            "name": "补单事由",
            "value": reason,
        },
        {
            "component_type": "DDSelectField",
            "id": "DDSelectField_BYJ02",
            "name": "费用类型",
            "value": "办公用品",
            "ext_value": json.dumps({"label": "办公用品", "key": "option_0"}, ensure_ascii=False),
        },
        {
            "component_type": "MoneyField",
            "id": "MoneyField_BYJ03",
            "name": "补充金额（元）",
            "value": total,
            "ext_value": json.dumps({"upper": "叁佰贰拾元整", "componentName": "MoneyField"}),
        },
        {
            "component_type": "DDDateField",
            "id": "DDDateField_BYJ04",
            "name": "发生日期",
            "value": "2026-11-03",
        },
        {
            "component_type": "DDSelectField",
            "id": "DDSelectField_BYJ05",
            "name": "支付方式",
            "value": pay,
            "ext_value": json.dumps({"label": pay, "key": "option_1"}, ensure_ascii=False),
        },
        {
            "component_type": "TableField",
            "id": "TableField_BYJ06",
            "name": "费用明细",
            "value": table_raw if table_raw is not None else table_value(rows),
            "ext_value": json.dumps({"statValue": [], "componentName": "TableField"}),
        },
        {
            "component_type": "TextareaField",
            "id": "TextareaField_BYJ07",
            "name": "备注",
            "value": "null",
        },
        {
            "component_type": "DDAttachment",
            "id": "DDAttachment_BYJ08",
            "name": "附件",
            "value": "null",
        },
        {
            "component_type": "InnerContactField",
            "id": "InnerContactField_BYJ09",
            "name": "经办人",
            "value": "李娜",
            "ext_value": json.dumps(
                [{"emplId": "0123456789012347", "name": "李娜", "avatar": ""}], ensure_ascii=False
            ),
        },
    ]


def dept_form(
    *,
    name: str = "华南分公司",
    code: str = "BM001023",
    parent: str = "总经办",
    prop: str = "销售部门",
    day: str = "2026-11-03",
    desc: str = "null",
) -> list[dict[str, Any]]:
    return [
        {"component_type": "TextField", "id": "TextField_DEP01", "name": "部门名称", "value": name},
        {"component_type": "TextField", "id": "TextField_DEP02", "name": "部门编码", "value": code},
        {
            "component_type": "DDSelectField",
            "id": "DDSelectField_DEP03",
            "name": "上级部门",
            "value": parent,
        },
        {
            "component_type": "DDSelectField",
            "id": "DDSelectField_DEP04",
            "name": "部门属性",
            "value": prop,
        },
        {
            "component_type": "DDDateField",
            "id": "DDDateField_DEP05",
            "name": "生效日期",
            "value": day,
        },
        {
            "component_type": "TextareaField",
            "id": "TextareaField_DEP06",
            "name": "描述",
            "value": desc,
        },
    ]


def snapshot(
    flow: str = "petty-cash",
    form: list[dict[str, Any]] | None = None,
    *,
    business_id: str = "202611031200000000123",
    pid: str = "pi-0001",
    status: str = "COMPLETED",
    result: str | None = "agree",
    biz_action: str = "NONE",
    userid: str = "0123456789012347",
    dept_id: str = "582976342",
    fingerprint: str = "fp-1",
    **instance_extra: Any,
) -> ApprovalSnapshot:
    if form is None:
        form = petty_form() if flow == "petty-cash" else dept_form()
    instance: dict[str, Any] = {
        "title": "李娜提交的备用金补单",
        "create_time": "2026-11-03 12:00:17",
        "finish_time": "2026-11-04 09:10:02",
        "originator_userid": userid,
        "originator_dept_id": dept_id,
        "originator_dept_name": "行政部",
        "status": status,
        "result": result or "",
        "business_id": business_id,
        "biz_action": biz_action,
        "form_component_values": form,
        **instance_extra,
    }
    return ApprovalSnapshot(
        flow=flow,
        process_code=PETTY_CODE if flow == "petty-cash" else DEPT_CODE,
        process_instance_id=pid,
        business_id=business_id,
        status=status,
        result=result,
        biz_action=biz_action,
        fetched_at=datetime(2026, 11, 4, 1, 11, tzinfo=UTC),
        fingerprint=fingerprint,
        instance=instance,
    )
