"""The bills the transformer maps from the demo approvals are accepted by the Kingdee sandbox.

Keeps the two sides of the seam in step: the example flows' Models (config/flows.yaml) against the
sandbox's form metadata and seeded base data, through Save and BatchSave with each flow's options.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from dingdee_common.codec import dumps
from dingdee_common.contracts.v1 import BillReady
from dingdee_sandbox.kingdee import SandboxConfig
from dingdee_transformer.flowspec import load_compiled
from dingdee_transformer.mapping import map_snapshot
from tests.contract.test_kingdee_sandbox import BATCH, STUB, Kd, start_kd, status
from tests.helpers import demo_flows_file
from tests.unit.transformer.samples import dept_form, snapshot

pytestmark = pytest.mark.contract

FLOWS = demo_flows_file()


@pytest.fixture
async def kd() -> AsyncIterator[Kd]:
    box, runner = await start_kd(SandboxConfig())
    yield box
    await box.http.aclose()
    await runner.cleanup()


def mapped(flow: str, **kwargs: object) -> BillReady:
    flows = load_compiled(FLOWS)
    bill = map_snapshot(flows[flow], snapshot(flow, **kwargs))  # type: ignore[arg-type]
    assert isinstance(bill, BillReady), bill
    return bill


async def test_petty_cash_bills_are_saved(kd: Kd) -> None:
    bills = [
        mapped("petty-cash", business_id=f"20261103120000000{n:04d}", pid=f"p{n}") for n in range(3)
    ]
    first = bills[0]
    body = {
        "formid": first.form_id,
        "data": {**first.save_options, "Model": [b.model for b in bills]},
    }
    st = status(await kd.call(BATCH, dumps(body)))  # the loader's serializer: exact amounts
    assert st["IsSuccess"] is True, st["Errors"]
    assert {e["Number"] for e in st["SuccessEntitys"]} == {b.bill_key for b in bills}


async def test_department_bill_is_saved_and_audited(kd: Kd) -> None:
    bill = mapped("department-sync", form=dept_form(code="BM009001", parent="财务部"))
    body = {"formid": bill.form_id, "data": {**bill.save_options, "Model": bill.model}}
    answer = await kd.call(f"{STUB}.DynamicFormService.Save", dumps(body))
    assert status(answer)["IsSuccess"] is True, status(answer)["Errors"]
    assert answer["Result"]["Number"] == bill.bill_key == "BM009001"
    record = kd.state.store.find("BD_Department", "BM009001")
    assert record is not None and record.status == "C"
    assert record.model["FParentID"] == {"FNumber": "BM000002"}
