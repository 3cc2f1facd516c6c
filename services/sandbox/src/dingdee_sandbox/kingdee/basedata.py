"""Seed base data of the Kingdee sandbox, derived from the demo organisation (``demo_org``).

Each kind of base data maps a number (``FNumber`` / ``FSTAFFNUMBER``) to an internal id and a name;
references in a Model are resolved against it. Departments saved through ``BD_Department`` join the
``departments`` kind at run time, so a later package can reference them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dingdee_sandbox.demo_org import DEPARTMENTS, EMPLOYEES, EXPENSE_TYPES, ORG_NUMBER

__all__ = ["BaseData", "BaseItem", "seed_base_data"]


@dataclass(frozen=True, slots=True)
class BaseItem:
    id: int
    number: str
    name: str


@dataclass
class BaseData:
    """Base-data registry: kind → number → item. Numbers are matched exactly, keys never."""

    kinds: dict[str, dict[str, BaseItem]] = field(default_factory=dict)
    _next_id: int = 1000

    def add(self, kind: str, number: str, name: str, item_id: int | None = None) -> BaseItem:
        """Register one item (called at seeding and when a department is saved)."""
        if item_id is None:
            self._next_id += 1
            item_id = self._next_id
        item = BaseItem(item_id, number, name)
        self.kinds.setdefault(kind, {})[number] = item
        return item

    def find(self, kind: str, number: str) -> BaseItem | None:
        return self.kinds.get(kind, {}).get(number)


_EXPENSE_NAMES = {number: label for label, number in EXPENSE_TYPES.items()}


def seed_base_data() -> BaseData:
    """The base data of /tmp/forms.md: org 100, BM000001–8, EMP0001–12, FYXM01–08 and the rest."""
    data = BaseData()
    data.add("orgs", ORG_NUMBER, "演示组织", item_id=1)
    for number, name in sorted(_EXPENSE_NAMES.items()):
        data.add("expense_items", number, name)
    for emp in EMPLOYEES:
        data.add("staff", emp.staff_number, emp.name)
    data.add("currencies", "PRE001", "人民币")
    data.add("bill_types", "FYBXD001_SYS", "费用报销单")
    data.add("bill_types", "QTYFD01_SYS", "标准其他应付单")
    data.add("rate_types", "HLTX01_SYS", "固定汇率")
    data.add("settle_types", "JSFS01_SYS", "现金")
    data.add("settle_types", "JSFS04_SYS", "电汇")
    for number, name in (
        ("DP01_SYS", "管理部门"),
        ("DP02_SYS", "销售部门"),
        ("DP03_SYS", "研发部门"),
        ("DP05_SYS", "生产部门"),
    ):
        data.add("dept_properties", number, name)
    data.add("dept_groups", "BMFZ01", "默认分组")
    return data


def seed_departments() -> list[tuple[str, str, str | None]]:
    """The demo departments as (number, name, parent number) in parent-first order."""
    by_id = {d.dingtalk_id: d for d in DEPARTMENTS}
    out: list[tuple[str, str, str | None]] = []
    for dept in DEPARTMENTS:
        parent = by_id.get(dept.parent_dingtalk_id or "")
        out.append((dept.kingdee_number, dept.name, parent.kingdee_number if parent else None))
    return out
