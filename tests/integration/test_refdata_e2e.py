"""Live master data end to end (issue #14): the real broker, both sandboxes, the three services.

``config/flows.yaml`` without its static tables (every lookup live), Kingdee sources refreshed
every few seconds (the test's "few minutes of sandbox time"). First every demo approval becomes a
bill from live sources alone. Then a new hire is added in DingTalk; their approved claim parks
(no bill, nothing dead-lettered); the employee is added in Kingdee; the claim becomes a bill with
no other step. Then a claim from a brand-new DingTalk department parks until the
department-sync flow's own ``BD_Department`` is saved by the loader, and loads. The bill set is
exact and no key is there twice.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from dingdee_common.kafka.reading import read_topic
from dingdee_dev.run import expected_bills
from dingdee_dev.stack import Stack, StackConfig
from dingdee_sandbox.demo_org import DEPARTMENTS, PROCESS_CODES
from dingdee_sandbox.dingtalk.generator import department_form
from tests.helpers import poll_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PETTY_FORM, DEPT_FORM = "ER_ExpReimbursement", "BD_Department"
FAST = {
    "DINGDEE_REFDATA__MIN_INTERVAL_SECONDS": "1",
    "DINGDEE_REFDATA_MIN_INTERVAL_SECONDS": "1",
    "DINGDEE_PARKING__CHECK_SECONDS": "1",
}


def live_only_flows(tmp: Path, *, refresh_seconds: float = 3.0) -> Path:
    """config/flows.yaml with no static tables and quick Kingdee refreshes."""
    doc = yaml.safe_load((ROOT / "config" / "flows.yaml").read_text(encoding="utf-8"))
    doc.pop("reference_tables", None)
    for source in doc["reference_sources"].values():
        if "kingdee" in source:
            source["refresh_seconds"] = refresh_seconds
    path = tmp / "flows-live.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


async def call(url: str, method: str, path: str, body: Any = None) -> Any:
    async with httpx.AsyncClient(timeout=10.0) as client:
        response = await client.request(method, f"{url}{path}", json=body)
        assert response.status_code < 300, response.text
        return response.json()


async def approve_new(stack: Stack, process_code: str, **body: Any) -> dict[str, Any]:
    created = await call(
        stack.dingtalk_url, "POST", "/_sandbox/instances", {"process_code": process_code, **body}
    )
    await call(stack.dingtalk_url, "POST", f"/_sandbox/instances/{created['id']}/approve")
    return dict(created)


async def bills(stack: Stack) -> dict[str, Counter[str]]:
    seeded = {d.kingdee_number for d in DEPARTMENTS}
    return {
        form: Counter(
            str(b["number"]) for b in await stack.kingdee_bills(form) if b["number"] not in seeded
        )
        for form in (PETTY_FORM, DEPT_FORM)
    }


async def parked_keys(stack: Stack) -> set[str]:
    alive: set[str] = set()
    for record in await read_topic(stack.kafka, stack.topics.parked):
        key = record.key.decode()
        if record.value is None:
            alive.discard(key)
        else:
            alive.add(key)
    return alive


async def wait_bill(stack: Stack, form: str, number: str, what: str) -> None:
    async def there() -> bool:
        return number in (await bills(stack))[form]

    await poll_until(there, timeout=120, what=what)


async def wait_parked(stack: Stack, pid: str, what: str) -> None:
    async def parked() -> bool:
        return pid in await parked_keys(stack)

    await poll_until(parked, timeout=90, what=what)


async def test_new_hire_and_new_department_park_then_load_by_themselves(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    config = StackConfig(
        workdir=tmp_path,
        flows_file=live_only_flows(tmp_path),
        demo=12,
        seed=5,
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"ref{tmp_path.name[-6:]}.",
        env=FAST,
    )
    async with Stack(config) as stack:
        demo = await expected_bills(stack)

        async def demo_loaded() -> bool:
            got = await bills(stack)
            return all(set(got[f]) >= demo.by_form[f] for f in demo.by_form)

        await poll_until(demo_loaded, timeout=240, what="the demo's bills from live sources only")

        # a new hire: in DingTalk first; their approved claim waits for Kingdee
        hire = {"userid": "0999000000000001", "name": "张三", "dept_ids": [582976341]}
        await call(
            stack.dingtalk_url, "POST", "/_sandbox/contacts/users", {**hire, "job_number": "A1023"}
        )
        claim = await approve_new(
            stack, PROCESS_CODES["petty-cash"], originator_userid=hire["userid"]
        )
        await wait_parked(stack, claim["id"], "the new hire's claim parked")
        assert "BYJ" + claim["business_id"] not in (await bills(stack))[PETTY_FORM]
        await call(
            stack.kingdee_url,
            "POST",
            "/_sandbox/basedata/employees",
            {"number": "A1023", "name": "张三"},
        )
        await wait_bill(stack, PETTY_FORM, "BYJ" + claim["business_id"], "the new hire's bill")

        # a new department: a claim from it waits until the department flow saved it in Kingdee
        dept = await call(
            stack.dingtalk_url,
            "POST",
            "/_sandbox/contacts/departments",
            {"name": "西北办事处", "parent_id": 1},
        )
        member = {"userid": "0999000000000002", "name": "李四", "dept_ids": [dept["dept_id"]]}
        await call(
            stack.dingtalk_url,
            "POST",
            "/_sandbox/contacts/users",
            {**member, "job_number": "EMP0003"},
        )
        claim2 = await approve_new(
            stack, PROCESS_CODES["petty-cash"], originator_userid=member["userid"]
        )
        await wait_parked(stack, claim2["id"], "the new department's claim parked")
        form = department_form(__import__("random").Random(1), "2026-12-01", "BM000099")
        for comp in form:
            if comp["name"] == "部门名称":
                comp["value"] = "西北办事处"
        request = await approve_new(
            stack, PROCESS_CODES["department-sync"], form_component_values=form
        )
        await wait_bill(stack, DEPT_FORM, "BM000099", "the department-sync flow's department")
        await wait_bill(
            stack, PETTY_FORM, "BYJ" + claim2["business_id"], "the new department's claim"
        )
        assert request["id"]

        expected = await expected_bills(stack)
        got = await bills(stack)
        counts = await stack.topic_counts()
        left = await parked_keys(stack)

    for form_id, numbers in expected.by_form.items():
        assert set(got[form_id]) == numbers, f"{form_id}: missing or extra bills"
        twice = {n: c for n, c in got[form_id].items() if c > 1}
        assert not twice, f"{form_id}: bills created twice: {twice}"
    assert counts["dlq.transformer"] == 0 and counts["dlq.loader"] == 0, json.dumps(counts)
    assert not left, f"still parked: {left}"
