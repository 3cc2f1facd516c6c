"""The two example flows of config/flows.yaml against demo-shaped approvals."""

from __future__ import annotations

from pathlib import Path

import pytest

from dingdee_common.contracts.v1 import BillReady
from dingdee_sandbox import demo_org
from dingdee_transformer.flowspec import CompiledFlow, load_compiled
from dingdee_transformer.mapping import LinkedChangeError, MappingError, Skip, map_snapshot
from dingdee_transformer.pipeline import Seen
from tests.helpers import demo_flows_file
from tests.unit.transformer.samples import (
    EMPTY_TABLE_VALUE,
    dept_form,
    petty_form,
    petty_row,
    snapshot,
)

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def flows() -> dict[str, CompiledFlow]:
    return load_compiled(demo_flows_file())


def _bill(result: BillReady | Skip) -> BillReady:
    assert isinstance(result, BillReady), result
    return result


class TestPettyCash:
    def test_header_and_rows_follow_kingdee_contract(self, flows: dict[str, CompiledFlow]) -> None:
        rows = [petty_row("打印纸", "办公用品", "1,234.50"), petty_row("高铁票", "差旅费", "¥302")]
        bill = _bill(
            map_snapshot(flows["petty-cash"], snapshot(form=petty_form(rows, pay="银行转账")))
        )
        model = bill.model
        assert bill.bill_key == "BYJ202611031200000000123" == model["FBillNo"]
        assert bill.form_id == "ER_ExpReimbursement" and bill.number_field == "FBillNo"
        assert list(model)[:2] == ["FID", "FBillNo"]
        assert model["FProposerID"] == {"FSTAFFNUMBER": "EMP0003"}
        assert model["FRequestDeptID"] == {"FNUMBER": "BM000003"}
        assert model["FPaySettlleTypeID"] == {"FNUMBER": "JSFS04_SYS"}
        assert model["FDate"] == "2026-11-03 00:00:00"
        assert model["FCausa"] == "11月行政部备用金补充"
        assert [r["FExpID"] for r in model["FEntity"]] == [
            {"FNUMBER": "FYXM01"},
            {"FNUMBER": "FYXM02"},
        ]
        assert [r["FTaxSubmitAmt"] for r in model["FEntity"]] == [1234.5, 302.0]
        assert model["FEntity"][0]["FRemark"] == "打印纸"
        assert bill.save_options["IsVerifyBaseDataField"] is True
        assert bill.source.process_instance_id == "pi-0001"

    def test_bad_amount_names_row_label_and_rule(self, flows: dict[str, CompiledFlow]) -> None:
        rows = [petty_row("a", "办公用品", "10"), petty_row("b", "差旅费", "12,3a")]
        with pytest.raises(MappingError) as caught:
            map_snapshot(flows["petty-cash"], snapshot(form=petty_form(rows)))
        text = str(caught.value)
        assert "flow 'petty-cash' approval 202611031200000000123" in text
        assert "费用明细第2行 金额 '12,3a' is not a number" in text
        assert "FEntity[2].FTaxSubmitAmt" in text and "convert money" in text
        assert text.count("is not a number") == 1  # one problem, said once for its three targets

    def test_unknown_expense_type_and_staff_are_lookup_errors(
        self, flows: dict[str, CompiledFlow]
    ) -> None:
        rows = [petty_row("a", "美容费", "10")]
        with pytest.raises(MappingError) as caught:
            map_snapshot(flows["petty-cash"], snapshot(form=petty_form(rows), userid="ghost"))
        rules = {e.rule for e in caught.value.errors}
        assert rules == {"lookup expense_types", "lookup staff"}
        # live lookups (issue #14): the reason says where the row is missing, and what to wait for
        assert "费用项目 '美容费' is not in Kingdee BD_Expense (FName)" in str(caught.value)
        waits = {e.waits_on for e in caught.value.errors}
        assert waits == {("kingdee_expense_items", "美容费"), ("dingtalk_users", "ghost")}

    def test_empty_table_quirk_fails_min_rows(self, flows: dict[str, CompiledFlow]) -> None:
        form = petty_form(table_raw=EMPTY_TABLE_VALUE)
        with pytest.raises(MappingError) as caught:
            map_snapshot(flows["petty-cash"], snapshot(form=form))
        assert "has 0 rows, at least 1 needed" in str(caught.value)

    def test_unknown_payment_method_is_a_map_error(self, flows: dict[str, CompiledFlow]) -> None:
        with pytest.raises(MappingError, match="'支付宝' is not one of: 现金, 银行转账"):
            map_snapshot(flows["petty-cash"], snapshot(form=petty_form(pay="支付宝")))

    @pytest.mark.parametrize(
        ("status", "result"),
        [("RUNNING", None), ("COMPLETED", "refuse"), ("TERMINATED", None), ("CANCELED", "")],
    )
    def test_unfinished_or_refused_are_skipped(
        self, flows: dict[str, CompiledFlow], status: str, result: str | None
    ) -> None:
        outcome = map_snapshot(flows["petty-cash"], snapshot(status=status, result=result))
        assert isinstance(outcome, Skip)

    @pytest.mark.parametrize("action", ["MODIFY", "REVOKE"])
    def test_linked_change_is_a_finance_decision(
        self, flows: dict[str, CompiledFlow], action: str
    ) -> None:
        snap = snapshot(biz_action=action, main_process_instance_id="pi-orig")
        original = Seen(("fp",), "BYJ202610011200000000007", "202610011200000000007")
        with pytest.raises(LinkedChangeError) as caught:
            map_snapshot(flows["petty-cash"], snap, original_of={"pi-orig": original}.get)
        text = str(caught.value)
        # what finance searches for: both 审批编号 and the Kingdee bill number, plus the ids
        assert "审批编号 202610011200000000007 (instance pi-orig)" in text
        assert "FBillNo BYJ202610011200000000007" in text
        assert f"审批编号 {snap.business_id} (instance {snap.process_instance_id})" in text
        assert "finance decision" in text
        assert caught.value.error_type == f"linked_{action.lower()}"

    def test_linked_change_of_an_unknown_original_says_what_is_unknown(
        self, flows: dict[str, CompiledFlow]
    ) -> None:
        snap = snapshot(biz_action="REVOKE", main_process_instance_id="pi-gone")
        with pytest.raises(LinkedChangeError) as caught:
            map_snapshot(flows["petty-cash"], snap, original_of=lambda _pid: None)
        text = str(caught.value)
        assert "instance pi-gone (审批编号 unknown to the transformer)" in text
        assert "(FBillNo unknown to the transformer)" in text

    def test_reference_tables_match_demo_org(self, flows: dict[str, CompiledFlow]) -> None:
        tables = flows["petty-cash"].tables
        assert dict(tables["staff"]) == {e.userid: e.staff_number for e in demo_org.EMPLOYEES}
        assert dict(tables["departments"]) == {
            d.dingtalk_id: d.kingdee_number for d in demo_org.DEPARTMENTS
        }
        assert dict(tables["department_names"]) == {
            d.name: d.kingdee_number for d in demo_org.DEPARTMENTS
        }
        assert dict(tables["expense_types"]) == demo_org.EXPENSE_TYPES


class TestDepartmentSync:
    def test_department_model(self, flows: dict[str, CompiledFlow]) -> None:
        snap = snapshot("department-sync", dept_form(desc="负责华南区域销售"))
        bill = _bill(map_snapshot(flows["department-sync"], snap))
        assert bill.bill_key == "BM001023" and bill.number_field == "FNumber"
        assert bill.form_id == "BD_Department"
        assert bill.model == {
            "FDEPTID": 0,
            "FCreateOrgId": {"FNumber": "100"},
            "FUseOrgId": {"FNumber": "100"},
            "FNumber": "BM001023",
            "FName": "华南分公司",
            "FFullName": "华南分公司",
            "FParentID": {"FNumber": "BM000001"},
            "FDeptProperty": {"FNumber": "DP02_SYS"},
            "FGroup": {"FNumber": "BMFZ01"},
            "FEffectDate": "2026-11-03 00:00:00",
            "FLapseDate": "9999-12-31 00:00:00",
            "FDescription": "负责华南区域销售",
        }

    def test_null_description_is_left_out(self, flows: dict[str, CompiledFlow]) -> None:
        bill = _bill(map_snapshot(flows["department-sync"], snapshot("department-sync")))
        assert "FDescription" not in bill.model

    @pytest.mark.parametrize(
        ("prop", "number"),
        [
            ("管理部门", "DP01_SYS"),
            ("销售部门", "DP02_SYS"),
            ("研发部门", "DP03_SYS"),
            ("生产部门", "DP05_SYS"),
        ],
    )
    def test_department_property_map(
        self, flows: dict[str, CompiledFlow], prop: str, number: str
    ) -> None:
        bill = _bill(
            map_snapshot(
                flows["department-sync"], snapshot("department-sync", dept_form(prop=prop))
            )
        )
        assert bill.model["FDeptProperty"] == {"FNumber": number}

    def test_missing_code_and_unknown_parent(self, flows: dict[str, CompiledFlow]) -> None:
        snap = snapshot("department-sync", dept_form(code="null", parent="火星部"))
        with pytest.raises(MappingError) as caught:
            map_snapshot(flows["department-sync"], snap)
        text = str(caught.value)
        assert "bill key placeholder {form:部门编码} is empty" in text
        assert "部门编码 is required but empty" in text
        assert "部门 '火星部' is not in Kingdee BD_Department (FName)" in text

    def test_bad_date(self, flows: dict[str, CompiledFlow]) -> None:
        snap = snapshot("department-sync", dept_form(day="2026-13-45"))
        with pytest.raises(MappingError, match="生效日期 '2026-13-45' is not a date"):
            map_snapshot(flows["department-sync"], snap)
