"""Live lookups (issue #14): joins, static overrides, ambiguity, disabled and unaudited rows,
the reason a miss gives, and what a record with only missing references becomes (parked)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dingdee_common.flows import load_flows
from dingdee_common.refdata import RefRow
from dingdee_transformer.refstore import LiveLookup, RefStore, live_tables
from dingdee_transformer.rules import LookupProblem

ROOT = Path(__file__).resolve().parents[3]
FLOWS = load_flows(ROOT / "config" / "flows.yaml")


def store() -> RefStore:
    s = RefStore(FLOWS.references())
    emp = [
        ("EMP0001", "张伟", "13800000001", "A", "C"),
        ("EMP0002", "王芳", "13800000002", "A", "C"),
    ]
    for number, name, mobile, forbid, doc in emp:
        fields = {"FNumber": number, "FStaffNumber": number, "FName": name, "FMobile": mobile,
                  "FForbidStatus": forbid, "FDocumentStatus": doc}  # fmt: skip
        s.apply(
            "kingdee_employees",
            number,
            RefRow(source="kingdee_employees", key=number, fields=fields),
        )
    users = [
        ("u1", "张伟", "EMP0001", ""),
        ("u2", "王芳", "", "13800000002"),
        ("u3", "张三", "A1023", ""),
    ]
    for userid, name, job, mobile in users:
        fields = {"userid": userid, "name": name, "job_number": job, "mobile": mobile}
        s.apply(
            "dingtalk_users", userid, RefRow(source="dingtalk_users", key=userid, fields=fields)
        )
    return s


def staff(s: RefStore, static: dict[str, str] | None = None) -> LiveLookup:
    return LiveLookup("staff", FLOWS.references().lookups["staff"], s, static)


def test_a_dingtalk_user_joins_by_job_number_then_by_mobile() -> None:
    s = store()
    assert staff(s).get("u1") == "EMP0001"
    assert staff(s).get("u2") == "EMP0002"  # no 工号: by mobile


def test_a_static_table_overrides_the_live_lookup() -> None:
    assert staff(store(), {"u1": "EMP9999"}).get("u1") == "EMP9999"
    tables = live_tables(store(), {"staff": {"u9": "EMP0009"}, "other": {"a": "b"}})
    assert tables["staff"].get("u9") == "EMP0009" and tables["other"]["a"] == "b"


def test_a_missing_employee_says_who_and_what_to_do_and_waits_for_kingdee() -> None:
    s = store()
    assert staff(s).get("u3") is None
    problem, waits = staff(s).explain("u3")
    assert waits == ("kingdee_employees", "u3")
    assert "员工 u3 (张三, 工号 A1023) is not in Kingdee BD_Empinfo" in problem
    assert "it will load by itself within 10 minutes, or replay" in problem


def test_an_unknown_dingtalk_user_waits_for_the_contacts() -> None:
    problem, waits = staff(store()).explain("u404")
    assert waits == ("dingtalk_users", "u404")
    assert "not in the DingTalk contacts of app 'main'" in problem


def test_two_employees_with_one_mobile_is_an_error_naming_both() -> None:
    s = store()
    fields = {
        "FNumber": "EMP0003",
        "FStaffNumber": "EMP0003",
        "FName": "王芳二",
        "FMobile": "13800000002",
    }
    s.apply(
        "kingdee_employees",
        "EMP0003",
        RefRow(source="kingdee_employees", key="EMP0003", fields=fields),
    )
    with pytest.raises(LookupProblem, match=r"EMP0002 \(王芳\) and EMP0003 \(王芳二\)"):
        staff(s).get("u2")


def test_a_disabled_employee_is_reported_as_disabled_and_an_unaudited_one_waits() -> None:
    s = store()
    fields = {"FNumber": "A1023", "FStaffNumber": "A1023", "FName": "张三", "FMobile": ""}
    row = RefRow(source="kingdee_employees", key="A1023", fields=fields, status="forbidden")
    s.apply("kingdee_employees", "A1023", row)
    with pytest.raises(LookupProblem, match="disabled"):
        staff(s).get("u3")
    s.apply("kingdee_employees", "A1023", row.model_copy(update={"status": "unaudited"}))
    assert staff(s).get("u3") is None
    s.apply("kingdee_employees", "A1023", row.model_copy(update={"status": "ok"}))
    assert staff(s).get("u3") == "A1023"
    s.apply("kingdee_employees", "A1023", None)  # deleted
    assert staff(s).get("u3") is None


def test_a_lookup_costs_at_most_two_microseconds_on_50000_employees() -> None:
    s = store()
    for n in range(50_000):
        number = f"SYN{n:06d}"
        fields = {"FNumber": number, "FStaffNumber": number, "FName": "x", "FMobile": f"139{n:08d}"}
        s.apply(
            "kingdee_employees",
            number,
            RefRow(source="kingdee_employees", key=number, fields=fields),
        )
        fields = {"userid": f"s{n}", "name": "x", "job_number": number, "mobile": ""}
        s.apply(
            "dingtalk_users", f"s{n}", RefRow(source="dingtalk_users", key=f"s{n}", fields=fields)
        )
    lookup = staff(s)
    keys = [f"s{n}" for n in range(0, 50_000, 50)] * 10
    best = min(_timed(lookup, keys) for _ in range(7))  # best of: the box is shared
    assert lookup.get("s49999") == "SYN049999"
    assert best / len(keys) < 2e-6, f"{best / len(keys) * 1e6:.2f} µs per lookup"


def _timed(lookup: LiveLookup, keys: list[str]) -> float:
    started = time.perf_counter()
    get = lookup.get
    for key in keys:
        get(key)
    return time.perf_counter() - started
