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

from dingdee_common.errors import FatalError
from dingdee_common.kafka.reading import read_topic
from dingdee_dev.stack import Stack, StackConfig
from dingdee_dev.watch import expected_bills
from dingdee_ops.console.journal import read_journal
from dingdee_sandbox.demo_org import DEPARTMENTS, PROCESS_CODES
from dingdee_sandbox.dingtalk.generator import department_form
from tests.helpers import dingdee, poll_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PETTY_FORM, DEPT_FORM = "ER_ExpReimbursement", "BD_Department"
FAST = {
    "DINGDEE_REFDATA__MIN_INTERVAL_SECONDS": "1",
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
        # the console's flow page counts it as waiting for master data (issue #17)
        journal = await read_journal(stack.kafka, stack.topics, window_hours=1)
        assert journal.counts("petty-cash", 1).waiting == 1
        assert journal.counts("department-sync", 1).waiting == 0
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
        waiting_at_end = (await read_journal(stack.kafka, stack.topics, 1)).waiting

    for form_id, numbers in expected.by_form.items():
        assert set(got[form_id]) == numbers, f"{form_id}: missing or extra bills"
        twice = {n: c for n, c in got[form_id].items() if c > 1}
        assert not twice, f"{form_id}: bills created twice: {twice}"
    assert counts["dlq.transformer"] == 0 and counts["dlq.loader"] == 0, json.dumps(counts)
    assert not left, f"still parked: {left}"
    assert not waiting_at_end, "released claims must leave the console's waiting count"


async def test_contact_events_update_the_dingtalk_sources_and_the_cli_shows_them(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """With events on, a user who joins, changes or leaves in DingTalk reaches
    ``refdata.dingtalk_users`` from the Stream event alone (no full read is due: once a day), and
    ``dingdee refdata status|lookup|sync`` show and drive the sources."""
    flows = live_only_flows(tmp_path, refresh_seconds=3600)
    config = StackConfig(
        workdir=tmp_path,
        flows_file=flows,
        demo=2,
        seed=3,
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"ev{tmp_path.name[-6:]}.",
        services=("extractor", "loader"),
        env=FAST,
        service_env={"extractor": {"DINGDEE_EVENTS__ENABLED": "true"}},
    )
    async with Stack(config) as stack:
        topic = stack.topics.refdata("dingtalk_users")

        async def row(userid: str) -> dict[str, Any] | None:
            found: dict[str, Any] | None = None
            try:
                records = await read_topic(stack.kafka, topic)
            except FatalError:  # not provisioned yet: the extractor creates it at start
                return None
            for record in records:
                if record.key == userid.encode():
                    found = None if record.value is None else json.loads(record.value)
            return found

        async def first_sync() -> bool:
            return await row("0123456789012345") is not None

        await poll_until(first_sync, timeout=90, what="the first full read of the contacts")
        user = {
            "userid": "0999000000000021",
            "name": "孙八",
            "dept_ids": [1],
            "job_number": "EMP0004",
        }
        await call(stack.dingtalk_url, "POST", "/_sandbox/contacts/users", user)

        async def joined() -> bool:
            found = await row("0999000000000021")
            return found is not None and found["fields"]["job_number"] == "EMP0004"

        await poll_until(joined, timeout=60, what="user_add_org → the user's row")
        await call(
            stack.dingtalk_url,
            "POST",
            "/_sandbox/contacts/users/0999000000000021",
            {"job_number": "EMP0005"},
        )

        async def changed() -> bool:
            found = await row("0999000000000021")
            return found is not None and found["fields"]["job_number"] == "EMP0005"

        await poll_until(changed, timeout=60, what="user_modify_org → the changed row")

        async def employees_read() -> bool:
            rows = await read_topic(stack.kafka, stack.topics.refdata("kingdee_employees"))
            return any(r.key == b"EMP0005" for r in rows)

        await poll_until(employees_read, timeout=60, what="the loader's first Kingdee read")
        args = ("--flows", str(flows))
        code, out = await dingdee(
            stack.kafka, "refdata", "lookup", "staff", "0999000000000021", *args
        )
        assert code == 0, out
        assert "0999000000000021 → EMP0005" in out and "dingtalk user/get" in out, out
        code, out = await dingdee(stack.kafka, "refdata", "status", *args)
        assert code == 0 and "dingtalk_users" in out and "kingdee_employees" in out, out
        code, out = await dingdee(
            stack.kafka, "refdata", "sync", "--table", "kingdee_employees", *args
        )
        assert code == 0 and "kingdee_employees: refresh requested" in out, out
        code, out = await dingdee(stack.kafka, "refdata", "lookup", "staff", "nobody", *args)
        assert code == 1 and "not in the DingTalk contacts" in out, out
        # the contact calls of the syncs, in the app's month (exempt from the allowance)
        code, out = await dingdee(stack.kafka, "quota", "status", "--budget", "main=1000000")
        assert code == 0 and "contacts (exempt)" in out, out
        main = next(line for line in out.splitlines() if line.strip("│ ").startswith("main"))
        assert int(main.split("│")[12].strip()) >= 3, main  # department/get, listsub, user/list…

        async with httpx.AsyncClient(timeout=10.0) as client:
            response = await client.delete(
                f"{stack.dingtalk_url}/_sandbox/contacts/users/0999000000000021"
            )
            assert response.status_code == 200, response.text

        async def left() -> bool:
            return await row("0999000000000021") is None

        await poll_until(left, timeout=60, what="user_leave_org → a tombstone")
