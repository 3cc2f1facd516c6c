"""A fresh deploy parks nothing (issue #14): the transformer waits for the first completed refresh
of every live source before it maps.

The transformer starts alone on an empty broker, every lookup live (no static tables): it says
"waiting for the first refresh of …" on ``/readyz`` and maps nothing. The extractor starts and
puts the demo approvals on ``approvals.raw`` and the DingTalk contacts on their topics; the
transformer still waits, now only for the Kingdee sources. The loader starts and publishes them;
every demo approval becomes its bill, and not one record was parked or put back on
``approvals.raw`` (before this, each of them parked once and was mapped twice).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import httpx
import pytest

from dingdee_dev.stack import Stack, StackConfig
from dingdee_dev.watch import expected_bills
from tests.helpers import poll_until, read_topic, wait_not_ready
from tests.integration.test_refdata_e2e import FAST, bills, live_only_flows

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KINGDEE = ("kingdee_departments", "kingdee_employees", "kingdee_expense_items")
DINGTALK = ("dingtalk_departments", "dingtalk_users")


async def readiness(port: int) -> tuple[int, str]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        response = await client.get(f"http://127.0.0.1:{port}/readyz")
    return response.status_code, response.text


async def test_a_transformer_started_before_the_publishers_parks_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    config = StackConfig(
        workdir=tmp_path,
        flows_file=live_only_flows(tmp_path, refresh_seconds=600),
        demo=12,
        seed=5,
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"fr{tmp_path.name[-6:]}.",
        services=("transformer",),
        env=FAST,
    )
    async with Stack(config) as stack:
        port = stack.ops_ports["transformer"]
        await wait_not_ready(port, "waiting for the first refresh of", timeout=90)
        _, reason = await readiness(port)
        assert all(stack.topics.refdata(s) in reason for s in (*KINGDEE, *DINGTALK)), reason

        stack.start_service("extractor")
        await stack.wait_alive("extractor")
        demo = await expected_bills(stack)

        async def extracted_and_contacts_read() -> bool:
            counts = await stack.topic_counts()
            _, why = await readiness(port)
            return counts["extracted"] >= demo.total and all(
                stack.topics.refdata(s) not in why for s in DINGTALK
            )

        await poll_until(
            extracted_and_contacts_read, timeout=120, what="the approvals and the contacts"
        )
        code, reason = await readiness(port)
        assert code == 503 and all(stack.topics.refdata(s) in reason for s in KINGDEE), reason
        assert (await stack.topic_counts())["transformed"] == 0, "mapped before Kingdee's refresh"

        stack.start_service("loader")
        await stack.wait_alive("loader")

        async def demo_loaded() -> bool:
            got = await bills(stack)
            return all(set(got[f]) >= demo.by_form[f] for f in demo.by_form)

        await poll_until(demo_loaded, timeout=240, what="the demo's bills")
        await stack.wait_ready("transformer", timeout=30)
        got = await bills(stack)
        counts = await stack.topic_counts()
        parked = await read_topic(stack.kafka, stack.topics.parked)
        raw = await read_topic(stack.kafka, stack.topics.approvals_raw)
        async with httpx.AsyncClient(timeout=5.0) as client:
            metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text

    for form_id, numbers in demo.by_form.items():
        assert set(got[form_id]) == numbers, f"{form_id}: missing or extra bills"
        twice = {n: c for n, c in got[form_id].items() if c > 1}
        assert not twice, f"{form_id}: bills created twice: {twice}"
    assert counts["dlq.transformer"] == 0 and counts["dlq.loader"] == 0, json.dumps(counts)
    assert parked == [], f"{len(parked)} records parked on a fresh deploy"
    put_back = Counter(r.key for r in raw if any(k == "dingdee-parked-waits" for k, _ in r.headers))
    assert not put_back, f"parked records put back on approvals.raw: {put_back}"
    for source in (*KINGDEE, *DINGTALK):
        assert f'dingdee_refdata_awaiting_first_refresh{{source="{source}"}} 0.0' in metrics
        assert f'dingdee_refdata_misses_total{{source="{source}"}} 0.0' in metrics
