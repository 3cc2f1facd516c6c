"""Demo Kingdee Models built from the demo organisation, for benches, load tests and examples.

``expense_model`` is a valid ``ER_ExpReimbursement`` package as the petty-cash flow maps it;
``invalid_expense_model`` breaks it in one of the ways Kingdee rejects a package for its data.
"""

from __future__ import annotations

import random
from typing import Any

from dingdee_sandbox.demo_org import DEPARTMENTS, EMPLOYEES, EXPENSE_TYPES, ORG_NUMBER

__all__ = ["INVALID_KINDS", "department_model", "expense_model", "invalid_expense_model"]

SAVE_OPTIONS: dict[str, Any] = {
    "IsAutoSubmitAndAudit": False,
    "IsVerifyBaseDataField": True,
    "NeedReturnFields": ["FBillNo"],
}
INVALID_KINDS = ("unknown_expense_item", "missing_causa", "unknown_staff")
_DEPT_BY_ID = {d.dingtalk_id: d.kingdee_number for d in DEPARTMENTS}


def expense_model(bill_no: str, rng: random.Random) -> dict[str, Any]:
    """A valid petty-cash reimbursement with 1–3 expense rows."""
    emp = rng.choice(EMPLOYEES)
    dept = _DEPT_BY_ID[emp.dept_id]
    rows = [
        {
            "FEntryID": 0,
            "FExpID": {"FNUMBER": rng.choice(list(EXPENSE_TYPES.values()))},
            "FExpenseDeptEntryID": {"FNUMBER": dept},
            "FTaxSubmitAmt": amount,
            "FExpSubmitAmount": amount,
            "FRequestAmount": amount,
            "FInvoiceType": "0",
            "FRemark": "办公用品",
        }
        for amount in (round(rng.uniform(10, 2000), 2) for _ in range(rng.randint(1, 3)))
    ]
    return {
        "FID": 0,
        "FBillNo": bill_no,
        "FBillTypeID": {"FNUMBER": "FYBXD001_SYS"},
        "FDate": "2026-11-03",
        "FCurrencyID": {"FNUMBER": "PRE001"},
        "FLocCurrencyID": {"FNUMBER": "PRE001"},
        "FExchangeTypeID": {"FNUMBER": "HLTX01_SYS"},
        "FExchangeRate": 1.0,
        "FOrgID": {"FNumber": ORG_NUMBER},
        "FProposerID": {"FSTAFFNUMBER": emp.staff_number},
        "FRequestDeptID": {"FNUMBER": dept},
        "FExpenseOrgId": {"FNumber": ORG_NUMBER},
        "FExpenseDeptID": {"FNUMBER": dept},
        "FCONTACTUNITTYPE": "BD_Empinfo",
        "FCONTACTUNIT": {"FNumber": emp.staff_number},
        "FCausa": "11月行政部备用金补充",
        "FRequestType": "1",
        "FPayOrgId": {"FNumber": ORG_NUMBER},
        "FPaySettlleTypeID": {"FNUMBER": rng.choice(["JSFS01_SYS", "JSFS04_SYS"])},
        "FEntity": rows,
    }


def invalid_expense_model(
    bill_no: str, rng: random.Random, kind: str | None = None
) -> dict[str, Any]:
    """A reimbursement Kingdee rejects for its data (``kind`` from ``INVALID_KINDS``)."""
    model = expense_model(bill_no, rng)
    kind = kind or rng.choice(INVALID_KINDS)
    if kind == "unknown_expense_item":
        model["FEntity"][0]["FExpID"] = {"FNUMBER": "FYXM99"}
    elif kind == "missing_causa":
        model["FCausa"] = ""
    else:
        model["FProposerID"] = {"FSTAFFNUMBER": "EMP9999"}
    return model


def department_model(number: str, name: str, parent: str = "BM000001") -> dict[str, Any]:
    """A valid ``BD_Department`` package as the department-sync flow maps it."""
    return {
        "FDEPTID": 0,
        "FCreateOrgId": {"FNumber": ORG_NUMBER},
        "FUseOrgId": {"FNumber": ORG_NUMBER},
        "FNumber": number,
        "FName": name,
        "FFullName": name,
        "FParentID": {"FNumber": parent},
        "FDeptProperty": {"FNumber": "DP01_SYS"},
        "FGroup": {"FNumber": "BMFZ01"},
        "FEffectDate": "2026-11-03",
        "FLapseDate": "9999-12-31 00:00:00",
        "FDescription": "",
    }
