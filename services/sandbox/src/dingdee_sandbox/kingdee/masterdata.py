"""Employee and expense-item base data of the Kingdee sandbox (kingdee.md §10.1, §10.2, §10.5).

``BD_Empinfo`` (员工, the form ``ER_ExpReimbursement.FProposerID`` references: §10.1 lines
1225–1232) and ``BD_Expense`` (费用项目) are registered beside ``BD_Department`` so that
``ExecuteBillQuery``/``BillQuery`` serve them with the usual ``FieldKeys``, ``FilterString``,
``OrderString``, ``StartRow``/``Limit`` (§4.1, §10.2). Seeded from the demo organisation, plus
records that are present **on purpose but not usable** (§10.2 status table): a forbidden
(``FForbidStatus`` ``B``) and an unaudited (``FDocumentStatus`` ``A``) employee and a forbidden
expense item. No extra department: the stack's tests and tools take every ``BD_Department``
record beyond the demo's eight for one the department flow saved (disable one with the
control API instead). Unusable records are kept out of the base-data registry
that Save resolves references against (§10.2: "with ``IsVerifyBaseDataField=true`` it counts as
not found"). ``BD_STAFF`` and ``BD_ExpenseItem`` stay unknown (``业务对象不存在``, §10.1 line 1221).
"""

from __future__ import annotations

from typing import Any

from dingdee_sandbox.demo_org import EMPLOYEES, EXPENSE_TYPES, ORG_NUMBER, demo_mobile
from dingdee_sandbox.kingdee.forms import FORMS, FieldSpec, FormSpec
from dingdee_sandbox.kingdee.store import Record, Store

__all__ = [
    "EMPINFO",
    "EXPENSE",
    "UNUSABLE_SEED",
    "add_employee",
    "seed_master_data",
    "seed_synthetic_employees",
    "set_forbid",
]

F = FieldSpec

# §10.2 line 1241: BD_Empinfo keys (header fields; the FPostEntity entry is not modelled)
EMPINFO = FormSpec(
    "BD_Empinfo",
    "员工",
    "FID",
    "FNumber",
    "YG",
    {
        "FID": F("实体主键"),
        "FNumber": F("员工编号"),
        "FStaffNumber": F("员工编号"),
        "FName": F("员工姓名", True),
        "FPersonID": F("人员"),
        "FPost": F("岗位"),
        "FMobile": F("移动电话"),
        "FEmail": F("电子邮箱"),
        "FUseOrgId": F("使用组织", True, "orgs"),
        "FCreateOrgId": F("创建组织", True, "orgs"),
    },
    base_kind="staff",
)

# §10.2 line 1244: FEXPID, FMasterId, FNumber, FName (status/org fields: "expected", UNCONFIRMED)
EXPENSE = FormSpec(
    "BD_Expense",
    "费用项目",
    "FEXPID",
    "FNumber",
    "FYXM",
    {
        "FEXPID": F("实体主键"),
        "FMasterId": F("主数据内码"),
        "FNumber": F("编码"),
        "FName": F("名称", True),
        "FUseOrgId": F("使用组织", True, "orgs"),
        "FCreateOrgId": F("创建组织", True, "orgs"),
    },
    base_kind="expense_items",
)

for _spec in (EMPINFO, EXPENSE):
    FORMS.setdefault(_spec.form_id.upper(), _spec)

_ORG = {"FNumber": ORG_NUMBER}

# (form, number, name, FDocumentStatus, FForbidStatus): present on purpose, not usable (§10.2)
UNUSABLE_SEED: tuple[tuple[str, str, str, str, str], ...] = (
    ("BD_Empinfo", "EMP9001", "停用员工", "C", "B"),
    ("BD_Empinfo", "EMP9002", "未审核员工", "A", "A"),
    ("BD_Expense", "FYXM99", "已停用费用", "C", "B"),
)


def _employee_model(number: str, name: str, mobile: str, staff_number: str) -> dict[str, Any]:
    # §10.1 line 1212: FNumber and FStaffNumber carry the same value in a captured View
    return {
        "FNumber": number,
        "FStaffNumber": staff_number,
        "FName": name,
        "FMobile": mobile,
        "FUseOrgId": _ORG,
        "FCreateOrgId": _ORG,
        "FForbidStatus": "A",
    }


def _unregister(store: Store, record: Record) -> None:
    """Keep an unusable record queryable but out of the registry Save resolves against."""
    kind = FORMS[record.form_id.upper()].base_kind
    if kind:
        store.base.kinds.get(kind, {}).pop(record.number, None)


def add_employee(
    store: Store,
    number: str,
    name: str,
    *,
    staff_number: str | None = None,
    mobile: str = "",
    document_status: str = "C",
    forbid_status: str = "A",
) -> Record:
    """Insert one ``BD_Empinfo`` record (the control API's "new employee").

    Raises:
        ValueError: the number is taken, or a status is not a §4.2 value.
    """
    if store.find("BD_Empinfo", number) is not None:
        raise ValueError(f"employee {number} exists")
    if document_status not in ("Z", "A", "B", "C", "D") or forbid_status not in ("A", "B"):
        raise ValueError("FDocumentStatus must be Z/A/B/C/D and FForbidStatus A/B (§4.2)")
    model = _employee_model(number, name, mobile, staff_number or number)
    model["FForbidStatus"] = forbid_status
    record = store._insert(EMPINFO, number, model, document_status)
    if (document_status, forbid_status) != ("C", "A"):
        _unregister(store, record)
    return record


def set_forbid(store: Store, form_id: str, number: str, forbidden: bool) -> Record:
    """Disable (``FForbidStatus`` B) or enable (A) a base-data record.

    Raises:
        KeyError: no such record.
    """
    record = store.find(form_id, number)
    if record is None:
        raise KeyError(number)
    record.model["FForbidStatus"] = "B" if forbidden else "A"
    spec = FORMS[record.form_id.upper()]
    if forbidden:
        _unregister(store, record)
    elif record.status == "C" and spec.base_kind:
        name = str(record.model.get("FName") or number)
        store.base.add(spec.base_kind, number, name, record.id)
    return record


def seed_master_data(store: Store) -> None:
    """The demo organisation's employees and expense items, plus the unusable records."""
    for dept in store.bills("BD_Department"):  # 部门全称 as in the §10.2 example answer
        dept.model.setdefault("FFullName", dept.model.get("FName"))
    for emp in EMPLOYEES:
        add_employee(store, emp.staff_number, emp.name, mobile=demo_mobile(emp))
    for label, number in sorted(EXPENSE_TYPES.items(), key=lambda kv: kv[1]):
        model = {"FName": label, "FUseOrgId": _ORG, "FCreateOrgId": _ORG, "FForbidStatus": "A"}
        record = store._insert(EXPENSE, number, model, "C")
        record.model["FMasterId"] = record.id
    for form_id, number, name, doc_status, forbid in UNUSABLE_SEED:
        if form_id == "BD_Empinfo":
            add_employee(store, number, name, document_status=doc_status, forbid_status=forbid)
            continue
        model = {"FName": name, "FUseOrgId": _ORG, "FCreateOrgId": _ORG, "FForbidStatus": forbid}
        record = store._insert(FORMS[form_id.upper()], number, model, doc_status)
        if form_id == "BD_Expense":
            record.model["FMasterId"] = record.id
        _unregister(store, record)


def seed_synthetic_employees(store: Store, count: int, prefix: str = "SYN") -> int:
    """Add ``count`` synthetic audited, enabled employees ``SYN000001``… (the 50 000 bench).

    Cheap: one dict insert per row, no validation. Returns how many were added (numbers that
    already exist are skipped).
    """
    added = 0
    for n in range(1, count + 1):
        number = f"{prefix}{n:06d}"
        if store.find("BD_Empinfo", number) is None:
            add_employee(store, number, f"合成员工{n}", mobile=f"139{n:08d}")
            added += 1
    return added
