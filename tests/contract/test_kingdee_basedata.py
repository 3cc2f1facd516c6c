"""Kingdee sandbox base data (kingdee.md §10.1, §10.2, §10.5) over real HTTP on 127.0.0.1.

``BD_Empinfo``, ``BD_Department`` and ``BD_Expense`` through ``ExecuteBillQuery``/``BillQuery``
with ``StartRow``/``Limit`` paging; the records present on purpose but not usable (disabled,
unaudited); the ``/_sandbox/basedata/`` control API; a 50 000-employee seed paged to the end;
agreement with the static ``reference_tables`` of ``config/flows.yaml``.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dingdee_sandbox.demo_org import EMPLOYEES, demo_mobile
from dingdee_sandbox.kingdee import SandboxConfig
from dingdee_sandbox.kingdee.demo import expense_model
from tests.contract.test_kingdee_sandbox import QUERY, STUB, Kd, start_kd
from tests.helpers import demo_flows_file

pytestmark = pytest.mark.contract

ROOT = Path(__file__).resolve().parents[2]
BILL_QUERY = f"{STUB}.DynamicFormService.BillQuery"
SAVE = f"{STUB}.DynamicFormService.Save"
USABLE = "FForbidStatus='A' and FDocumentStatus='C'"


@pytest.fixture
async def kd() -> AsyncIterator[Kd]:
    box, runner = await start_kd(SandboxConfig(seed=1))
    yield box
    await box.http.aclose()
    await runner.cleanup()


async def query(kd: Kd, **data: Any) -> Any:
    return await kd.call(QUERY, {"data": data})


async def page_all(kd: Kd, form_id: str, keys: str, limit: int, flt: str = "") -> list[list[Any]]:
    """Page with StartRow/Limit until a page returns fewer than Limit rows (§10.2 paging)."""
    pk = keys.split(",", maxsplit=1)[0]
    rows: list[list[Any]] = []
    start = 0
    while True:
        page = await query(
            kd,
            FormId=form_id,
            FieldKeys=keys,
            FilterString=flt,
            OrderString=f"{pk} ASC",
            TopRowCount=0,
            StartRow=start,
            Limit=limit,
        )
        assert isinstance(page, list) and all(isinstance(r, list) for r in page), page
        rows.extend(page)
        if len(page) < limit:
            return rows
        start += limit


def flows_tables() -> dict[str, dict[str, str]]:
    tables: dict[str, dict[str, str]] = yaml.safe_load(
        (demo_flows_file()).read_text(encoding="utf-8")
    )["reference_tables"]
    return tables


class TestEmployees:
    async def test_paging_to_the_end_returns_exactly_the_seeded_set(self, kd: Kd) -> None:
        keys = (
            "FID,FNumber,FStaffNumber,FName,FMobile,FUseOrgId.FNumber,FForbidStatus,FDocumentStatus"
        )
        rows = await page_all(kd, "BD_Empinfo", keys, limit=5)
        ids = [r[0] for r in rows]
        assert ids == sorted(ids) and len(set(ids)) == len(ids) == 14
        by_number = {r[1]: r for r in rows}
        for emp in EMPLOYEES:
            fid, _, staff, name, mobile, org, forbid, doc = by_number[emp.staff_number]
            # §10.1 line 1212: FNumber and FStaffNumber are equal in a captured View
            assert (staff, name, mobile, org) == (
                emp.staff_number,
                emp.name,
                demo_mobile(emp),
                "100",
            )
            assert (forbid, doc) == ("A", "C") and isinstance(fid, int)
        assert set(by_number) - {e.staff_number for e in EMPLOYEES} == {"EMP9001", "EMP9002"}

    async def test_disabled_and_unaudited_are_flagged_and_filtered(self, kd: Kd) -> None:
        keys = "FNumber,FForbidStatus,FDocumentStatus"
        rows = {r[0]: r[1:] for r in await page_all(kd, "BD_Empinfo", keys, limit=100)}
        assert rows["EMP9001"] == ["B", "C"]  # 禁用: "report disabled, not missing" (§10.2)
        assert rows["EMP9002"] == ["A", "A"]  # 创建, not audited
        usable = await page_all(kd, "BD_Empinfo", keys, limit=100, flt=USABLE)
        assert {r[0] for r in usable} == {e.staff_number for e in EMPLOYEES}

    async def test_unusable_employee_is_not_found_by_a_verifying_save(self, kd: Kd) -> None:
        model = expense_model("BX-EMP9002", random.Random(3))
        model["FProposerID"] = {"FSTAFFNUMBER": "EMP9002"}
        answer = await kd.call(
            SAVE,
            {
                "formid": "ER_ExpReimbursement",
                "data": {"Model": model, "IsVerifyBaseDataField": True},
            },
        )
        status = answer["Result"]["ResponseStatus"]
        assert status["IsSuccess"] is False
        assert (
            "EMP9002" in status["Errors"][0]["Message"]
            and "未审核" in status["Errors"][0]["Message"]
        )

    async def test_bill_query_returns_objects_keyed_by_field_keys(self, kd: Kd) -> None:
        rows = await kd.call(
            BILL_QUERY,
            {
                "data": {
                    "FormId": "BD_Empinfo",
                    "FieldKeys": "FStaffNumber,FName,FUseOrgId.FNumber",
                    "FilterString": "FStaffNumber in ('EMP0001','EMP0012')",
                    "OrderString": "FID ASC",
                }
            },
        )
        assert rows == [
            {"FStaffNumber": "EMP0001", "FName": "张伟", "FUseOrgId.FNumber": "100"},
            {"FStaffNumber": "EMP0012", "FName": "孙杰", "FUseOrgId.FNumber": "100"},
        ]


class TestDepartmentsAndExpenseItems:
    async def test_department_request_of_the_contract(self, kd: Kd) -> None:
        keys = (
            "FDEPTID,FNumber,FName,FFullName,FParentID.FNumber,FUseOrgId.FNumber,"
            "FForbidStatus,FDocumentStatus"
        )
        flt = f"FUseOrgId.FNumber='100' and {USABLE}"
        rows = await page_all(kd, "BD_Department", keys, limit=3, flt=flt)  # §10.2 lines 1251–1255
        assert [r[1] for r in rows] == [f"BM00000{n}" for n in range(1, 9)]
        assert rows[1][2:4] == ["财务部", "财务部"]  # FName, FFullName
        assert all(r[4] == "BM000001" for r in rows[1:]) and rows[0][4] in (None, "", 0)
        await kd.http.post(f"{kd.root}/_sandbox/basedata/BD_Department/BM000008/disable")
        every = await page_all(kd, "BD_Department", "FDEPTID,FNumber,FForbidStatus", limit=100)
        assert [r[1:] for r in every][-1] == ["BM000008", "B"]
        assert len(await page_all(kd, "BD_Department", "FDEPTID", 100, flt=flt)) == 7

    async def test_expense_items(self, kd: Kd) -> None:
        rows = await page_all(kd, "BD_Expense", "FEXPID,FMasterId,FNumber,FName,FForbidStatus", 4)
        assert [r[2] for r in rows] == [f"FYXM0{n}" for n in range(1, 9)] + ["FYXM99"]
        assert rows[-1][4] == "B" and all(r[4] == "A" for r in rows[:-1])
        assert all(r[0] == r[1] for r in rows)

    async def test_unknown_forms_and_keys_are_the_documented_errors(self, kd: Kd) -> None:
        for form in ("BD_STAFF", "BD_ExpenseItem"):  # §10.1 line 1221: not form ids
            answer = await query(kd, FormId=form, FieldKeys="FNumber")
            assert (
                answer[0][0]["Result"]["ResponseStatus"]["Errors"][0]["Message"] == "业务对象不存在"
            )
        answer = await query(kd, FormId="BD_Empinfo", FieldKeys="FNumber,FNoSuchKey", Limit=1)
        message = answer[0][0]["Result"]["ResponseStatus"]["Errors"][0]["Message"]
        assert message == "元数据中标识为FNoSuchKey的字段不存在"  # §10.3 fallback check


class TestControlApi:
    async def test_new_employee_is_visible_and_resolvable(self, kd: Kd) -> None:
        model = expense_model("BX-NEW", random.Random(4))
        model["FProposerID"] = {"FSTAFFNUMBER": "EMP0013"}
        body = {
            "formid": "ER_ExpReimbursement",
            "data": {"Model": model, "IsVerifyBaseDataField": True},
        }
        assert (await kd.call(SAVE, body))["Result"]["ResponseStatus"]["IsSuccess"] is False
        new = {"number": "EMP0013", "name": "钱新", "mobile": "13800000013"}
        response = await kd.http.post(f"{kd.root}/_sandbox/basedata/employees", json=new)
        assert response.status_code == 201 and response.json()["status"] == "C"
        again = await kd.http.post(f"{kd.root}/_sandbox/basedata/employees", json=new)
        assert again.status_code == 409
        rows = await query(
            kd,
            FormId="BD_Empinfo",
            FieldKeys="FStaffNumber,FName,FMobile",
            FilterString="FNumber='EMP0013'",
        )
        assert rows == [["EMP0013", "钱新", "13800000013"]]
        assert (await kd.call(SAVE, body))["Result"]["ResponseStatus"]["IsSuccess"] is True

    async def test_disable_and_enable(self, kd: Kd) -> None:
        url = f"{kd.root}/_sandbox/basedata/BD_Empinfo/EMP0003"
        assert (await kd.http.post(f"{url}/disable")).json()["model"]["FForbidStatus"] == "B"
        flt = "FNumber='EMP0003'"
        keys = "FNumber,FForbidStatus"
        assert await query(kd, FormId="BD_Empinfo", FieldKeys=keys, FilterString=flt) == [
            ["EMP0003", "B"]
        ]
        assert (
            await query(kd, FormId="BD_Empinfo", FieldKeys=keys, FilterString=f"{flt} and {USABLE}")
            == []
        )
        await kd.http.post(f"{url}/enable")
        assert await query(kd, FormId="BD_Empinfo", FieldKeys=keys, FilterString=flt) == [
            ["EMP0003", "A"]
        ]
        missing = await kd.http.post(f"{kd.root}/_sandbox/basedata/BD_Empinfo/EMP7777/disable")
        assert missing.status_code == 404

    async def test_bad_input_is_refused(self, kd: Kd) -> None:
        post = kd.http.post
        assert (
            await post(f"{kd.root}/_sandbox/basedata/employees", json={"name": "x"})
        ).status_code == 400
        bad = {"number": "EMP0099", "name": "x", "document_status": "Q"}
        assert (await post(f"{kd.root}/_sandbox/basedata/employees", json=bad)).status_code == 400
        assert (
            await post(f"{kd.root}/_sandbox/basedata/synthetic", json={"employees": -1})
        ).status_code == 400


class TestScale:
    async def test_50000_employees_page_to_the_end(
        self, kd: Kd, capsys: pytest.CaptureFixture[str]
    ) -> None:
        started = time.perf_counter()
        seeded = await kd.http.post(
            f"{kd.root}/_sandbox/basedata/synthetic", json={"employees": 50_000}, timeout=120
        )
        seed_s = time.perf_counter() - started
        assert seeded.json() == {"added": 50_000, "total": 50_014}
        # Limit above the 10 000 cap (§4.1) is served as 10 000
        capped = await query(kd, FormId="BD_Empinfo", FieldKeys="FID", StartRow=0, Limit=20_000)
        assert len(capped) == 10_000
        started = time.perf_counter()
        rows = await page_all(kd, "BD_Empinfo", "FID,FStaffNumber", limit=2000, flt=USABLE)
        page_s = time.perf_counter() - started
        numbers = [r[1] for r in rows]
        assert len(numbers) == len(set(numbers)) == 50_012
        assert {f"SYN{n:06d}" for n in (1, 25_000, 50_000)} <= set(numbers)
        with capsys.disabled():
            print(f"\n50 000 employees: seed {seed_s:.2f} s, 26 pages of 2000 in {page_s:.2f} s")


class TestAgreesWithFlowsYaml:
    async def test_staff_departments_and_expense_items_match_reference_tables(self, kd: Kd) -> None:
        tables = flows_tables()
        staff = await page_all(kd, "BD_Empinfo", "FID,FStaffNumber", 100, flt=USABLE)
        assert set(tables["staff"].values()) == {r[1] for r in staff}
        depts = await page_all(kd, "BD_Department", "FDEPTID,FNumber,FName", 100, flt=USABLE)
        assert set(tables["departments"].values()) == {r[1] for r in depts}
        assert tables["department_names"] == {r[2]: r[1] for r in depts}
        items = await page_all(kd, "BD_Expense", "FEXPID,FNumber,FName", 100, flt=USABLE)
        assert tables["expense_types"] == {r[2]: r[1] for r in items}
