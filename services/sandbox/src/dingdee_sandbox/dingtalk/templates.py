"""The demo templates' form schemas, as the schema API returns them (dingtalk.md §9.5.1).

Derived from the forms the generator fills in (``generator.petty_cash_form`` /
``department_form``), so schema and instances always agree.
"""

from __future__ import annotations

import random
from typing import Any

from dingdee_sandbox.dingtalk.generator import (
    COLUMNS,
    DEPT,
    PETTY,
    department_form,
    petty_cash_form,
)

__all__ = ["demo_schemas"]

_CREATED_MS = 1_735_660_800_000  # 2025-01-01 CST: the demo templates predate every instance
_NAMES = {PETTY: "备用金补单", DEPT: "部门新建申请"}


def _item(kind: str, cid: str, label: str) -> dict[str, Any]:
    required = kind != "DDAttachment"
    return {"componentName": kind, "props": {"id": cid, "label": label, "required": required}}


def _template(process_code: str, components: list[dict[str, Any]]) -> dict[str, Any]:
    items = []
    for comp in components:
        item = _item(comp["component_type"], comp["id"], comp["name"])
        if comp["component_type"] == "TableField":
            item["children"] = [_item(kind, cid, label) for kind, cid, label in COLUMNS]
        items.append(item)
    name = _NAMES[process_code]
    return {
        "creatorUserId": "0123456789012345",
        "appUuid": "SWAPP-DINGDEE-DEMO",
        "formCode": process_code,
        "formUuid": f"FORM-{process_code[5:]}",
        "name": name,
        "memo": "",
        "ownerIdType": "orgId",
        "status": "PUBLISHED",
        "engineType": 0,
        "appType": 0,
        "procType": "inner",
        "visibleRange": "PRIVATE",
        "gmtCreate": str(_CREATED_MS),  # epoch ms as a string (§9.5.1 table)
        "gmtModified": str(_CREATED_MS),
        "schemaContent": {"title": name, "icon": "common", "items": items},
    }


def demo_schemas() -> dict[str, dict[str, Any]]:
    """processCode → the ``result`` of the schema API, for the demo templates."""
    rng, handler = random.Random(0), ("0123456789012345", "张伟")
    return {
        PETTY: _template(PETTY, petty_cash_form(rng, "2026-01-01", handler, rows_wanted=1)),
        DEPT: _template(DEPT, department_form(rng, "2026-01-01", "BM900001")),
    }
