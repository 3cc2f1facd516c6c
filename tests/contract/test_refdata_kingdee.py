"""The loader's Kingdee reference sources against the sandbox (issue #14, kingdee.md §10.2).

``query_all`` pages every source of ``config/flows.yaml`` with StartRow/Limit to the end, keeps
disabled and unaudited records with their status (never silently dropped), and agrees with the
demo organisation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dingdee_common.flows import load_flows
from dingdee_common.refdata import SourceSpec
from dingdee_loader.refresh import query_all
from dingdee_sandbox.demo_org import DEPARTMENTS, EMPLOYEES, EXPENSE_TYPES
from dingdee_sandbox.kingdee import SandboxConfig
from tests.contract.test_kingdee_loader_client import client
from tests.contract.test_kingdee_sandbox import Kd, start_kd

pytestmark = pytest.mark.contract

ROOT = Path(__file__).resolve().parents[2]
SOURCES = load_flows(ROOT / "config" / "flows.yaml").references().owned_by("loader")


@pytest.fixture
async def kd() -> AsyncIterator[Kd]:
    box, runner = await start_kd(SandboxConfig(seed=3))
    yield box
    await box.http.aclose()
    await runner.cleanup()


def small_pages(spec: SourceSpec, size: int) -> SourceSpec:
    assert spec.kingdee is not None
    return spec.model_copy(update={"kingdee": spec.kingdee.model_copy(update={"page_size": size})})


async def test_every_source_reads_the_demo_organisation_with_statuses(kd: Kd) -> None:
    c, lane, _ = client(kd)
    employees = await query_all(
        c, lane, "kingdee_employees", small_pages(SOURCES["kingdee_employees"], 5)
    )
    usable = {k: r.fields["FStaffNumber"] for k, r in employees.items() if r.status == "ok"}
    assert usable == {e.staff_number: e.staff_number for e in EMPLOYEES}
    assert employees["EMP9001"].status == "forbidden"
    assert employees["EMP9002"].status == "unaudited"
    depts = await query_all(c, lane, "kingdee_departments", SOURCES["kingdee_departments"])
    assert {r.fields["FName"]: k for k, r in depts.items()} == {
        d.name: d.kingdee_number for d in DEPARTMENTS
    }
    items = await query_all(c, lane, "kingdee_expense_items", SOURCES["kingdee_expense_items"])
    assert {r.fields["FName"]: k for k, r in items.items() if r.status == "ok"} == EXPENSE_TYPES
    assert [r.status for r in items.values() if r.status != "ok"] == ["forbidden"]
