"""The loader's refresher schedule (issue #14): requests for one Kingdee source are coalesced,
so a thousand misses of one new hire cause one query, not a thousand."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from dingdee_common.flows import load_flows
from dingdee_common.refdata import RefRow
from dingdee_loader.refresh import Refresher
from dingdee_loader.settings import KingdeeSettings, LoaderSettings, RefdataSettings

ROOT = Path(__file__).resolve().parents[3]
SOURCES = load_flows(ROOT / "config" / "flows.yaml").references().owned_by("loader")


def refresher(queries: list[str]) -> Refresher:
    settings = LoaderSettings(
        kingdee=KingdeeSettings(
            server_url="http://k/k3cloud", acct_id="a", username="u", app_id="1_x", app_secret="s"
        ),
        refdata=RefdataSettings(min_interval_seconds=30),
    )
    lanes: asyncio.Queue[Any] = asyncio.Queue()
    lanes.put_nowait(object())
    r = Refresher(settings, None, None, lanes, SOURCES)  # type: ignore[arg-type]

    async def read(name: str) -> None:
        queries.append(name)
        r.schedule.begin(name)

    r.refresh = read  # type: ignore[method-assign]
    return r


async def due_now(r: Refresher) -> None:
    for name in r.schedule.now_due():
        await r.refresh(name)


async def test_a_thousand_requests_for_one_source_make_one_query() -> None:
    queries: list[str] = []
    r = refresher(queries)
    await due_now(r)  # the start-up read of every source
    assert sorted(queries) == sorted(SOURCES)
    queries.clear()
    for _ in range(1000):
        r.request("kingdee_employees")
    await due_now(r)
    assert queries == []  # the last read was less than min_interval ago: one read, later
    soonest = r.schedule.last["kingdee_employees"] + 30
    assert abs(r.schedule.due["kingdee_employees"] - soonest) < 0.01
    r.schedule.last["kingdee_employees"] -= 31
    r.schedule.due["kingdee_employees"] -= 31
    for _ in range(1000):
        r.request("kingdee_employees")
    await due_now(r)
    assert queries == ["kingdee_employees"]
    r.request("no_such_source")  # ignored


async def test_a_saved_department_is_published_at_once_with_its_audit_status() -> None:
    sent: list[RefRow] = []
    r = refresher([])

    class Publisher:
        async def publish_one(self, row: RefRow) -> bool:
            sent.append(row)
            return True

    r.publishers["kingdee_departments"] = Publisher()  # type: ignore[assignment]
    from dingdee_common.contracts.v1 import BillReady, SourceRef

    bill = BillReady(
        flow="department-sync", bill_key="BM000099", form_id="BD_Department",
        number_field="FNumber", save_options={"IsAutoSubmitAndAudit": True},
        model={"FNumber": "BM000099", "FName": "西北办事处", "FParentID": {"FNumber": "BM000001"}},
        source=SourceRef(process_instance_id="p", business_id="b", fingerprint="f"),
    )  # fmt: skip
    await r.saved(bill)
    [row] = sent
    assert (row.source, row.key, row.status) == ("kingdee_departments", "BM000099", "ok")
    assert row.fields["FName"] == "西北办事处" and row.fields["FDocumentStatus"] == "C"
