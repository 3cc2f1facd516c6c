"""Amounts reach Kingdee with exactly the digits the approval gave, through every hop.

DingTalk form text → transformer mapping → ``bills.ready`` bytes → the loader's decode → the
Kingdee client's request bytes, sent over real HTTP to the Kingdee sandbox. With floats anywhere
on the way, ``12345678901234567.89`` became ``1.2345678901234568e+16`` (issue #20).
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from decimal import Decimal
from itertools import count
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dingdee_common.codec import decode_model, encode_model, loads
from dingdee_common.contracts.v1 import BillReady
from dingdee_common.flows import FlowsFile
from dingdee_loader.kingdee.client import KingdeeClient, Lane
from dingdee_loader.kingdee.models import RowKind
from dingdee_sandbox.kingdee import SandboxConfig
from dingdee_transformer.flowspec import CompiledFlow, compile_flows
from dingdee_transformer.mapping import map_snapshot
from tests.contract.test_kingdee_loader_client import client
from tests.contract.test_kingdee_sandbox import start_kd
from tests.helpers import demo_flows_file
from tests.unit.transformer.samples import petty_form, petty_row, snapshot

pytestmark = pytest.mark.contract

FLOWS = demo_flows_file()
AMOUNTS = ("FTaxSubmitAmt", "FExpSubmitAmount", "FRequestAmount")
PRECISIONS = (0, 2, 4)  # 2 is what the example flows use; 0 and 4 for whole yuan and rates
_numbers = count()


def _flow(precision: int) -> CompiledFlow:
    """The example petty-cash flow, its amounts at ``precision`` places, any sign, 18 digits."""
    data = yaml.safe_load(FLOWS.read_text(encoding="utf-8"))
    mapping = data["flows"][0]["mapping"]
    mapping.pop("checks")  # the form's total is written at 2 places: not this test's business
    rows = mapping["fields"]["FEntity"]["rows"]["fields"]
    for key in AMOUNTS:
        rule = {k: v for k, v in rows[key].items() if k != "max"}
        rows[key] = {**rule, "precision": precision, "max_abs": "1e18"}
        rows[key] |= {"allow_negative": True, "allow_zero": True}
    return compile_flows(FlowsFile.model_validate(copy.deepcopy(data)))["petty-cash"]


FLOW_AT = {p: _flow(p) for p in PRECISIONS}


class Recording(httpx.AsyncBaseTransport):
    """Real HTTP, keeping the bytes of every request body."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.bodies: list[bytes] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(request.content)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
async def wire() -> AsyncIterator[tuple[KingdeeClient, Lane, Recording]]:
    """The sandbox and one loader client lane to it, its requests recorded (for every example)."""
    box, runner = await start_kd(SandboxConfig(seed=3))
    kc, lane, _ = client(box)
    await lane.http.aclose()
    recording = Recording()
    lane.http = httpx.AsyncClient(transport=recording, timeout=5)
    yield kc, lane, recording
    await lane.http.aclose()
    await box.http.aclose()
    await runner.cleanup()


def _form_text(value: Decimal, style: str) -> str:
    plain = format(value, "f")
    if style == "grouped":
        return f"{value:,f}"
    return f"¥{plain}" if style == "yuan" else plain


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # one sandbox for all examples
)
@given(
    precision=st.sampled_from(PRECISIONS),
    units=st.integers(-(10**18) + 1, 10**18 - 1),
    style=st.sampled_from(["plain", "grouped", "yuan"]),
)
async def test_amounts_reach_kingdee_byte_exact(
    wire: tuple[KingdeeClient, Lane, Recording], precision: int, units: int, style: str
) -> None:
    value = Decimal(units).scaleb(-precision)  # up to 18 digits, `precision` of them decimals
    flow = FLOW_AT[precision]
    n = next(_numbers)
    row = petty_row("打印纸", "办公用品", _form_text(value, style))
    snap = snapshot(form=petty_form([row]), business_id=f"2026110399{n:011d}", pid=f"m{n}")
    bill = map_snapshot(flow, snap)
    assert isinstance(bill, BillReady)

    # the transformer's bytes on bills.ready, as the loader reads them
    loaded = decode_model(encode_model(bill), BillReady, supported_versions=frozenset({1}))
    kc, lane, recording = wire
    recording.bodies.clear()
    rows = await kc.batch_save(lane, loaded.form_id, loaded.save_options, [loaded.model])

    expected = format(value, "f")
    assert "E" not in expected and expected.count(".") == (1 if precision else 0)
    (body,) = [b for b in recording.bodies if b'"Model"' in b]
    for key in AMOUNTS:
        assert f'"{key}":{expected},'.encode() in body or f'"{key}":{expected}}}'.encode() in body
    sent: dict[str, Any] = loads(body, exact=True)["data"]["Model"][0]["FEntity"][0]
    assert {sent[key] for key in AMOUNTS} == {value}
    assert rows[0].kind is RowKind.SAVED, rows[0].message
