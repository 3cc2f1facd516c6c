"""The console's flow picture: every field of both example flows appears, with its source, and
the flows page shows them (escaped) without Kafka."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from dingdee_common.flows import load_flows
from dingdee_ops.console.app import build_app
from dingdee_ops.console.picture import FlowPicture, picture
from dingdee_ops.console.settings import ConsoleSettings
from dingdee_ops.console.state import ConsoleState
from dingdee_transformer.flowspec import load_compiled

ROOT = Path(__file__).resolve().parents[3]
FLOWS = ROOT / "config" / "flows.yaml"
SOURCES = ("component", "attr", "cell", "template", "rows")
F_KEY = re.compile(r"^F[A-Za-z0-9_]+$")


def expected_fields(fields: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, str, str]]:
    """(target, source kind, source) of every field, read from the YAML itself."""
    for key, rule in fields.items():
        target = f"{prefix}{key}"
        is_rule = isinstance(rule, dict) and not all(F_KEY.match(k) for k in rule)
        if not is_rule:
            yield target, "const", orjson.dumps(rule).decode()
            continue
        kind = next(k for k in (*SOURCES, "const") if k in rule)
        if kind == "rows":
            yield target, "rows", rule["rows"]["table"]
            yield from expected_fields(rule["rows"]["fields"], f"{target}.")
        elif kind == "const":
            yield target, "const", orjson.dumps(rule["const"]).decode()
        else:
            yield target, kind, str(rule[kind])


@pytest.fixture(scope="module")
def pictures() -> dict[str, FlowPicture]:
    entries = {e.id: e for e in load_flows(FLOWS).enabled()}
    return {fid: picture(flow, entries[fid]) for fid, flow in load_compiled(FLOWS).items()}


@pytest.fixture(scope="module")
def raw_flows() -> dict[str, dict[str, Any]]:
    return {f["id"]: f for f in yaml.safe_load(FLOWS.read_text())["flows"]}


@pytest.mark.parametrize("flow_id", ["petty-cash", "department-sync"])
def test_every_field_appears_with_its_source(
    flow_id: str, pictures: dict[str, FlowPicture], raw_flows: dict[str, dict[str, Any]]
) -> None:
    raw = raw_flows[flow_id]
    pic = pictures[flow_id]
    expected = list(expected_fields(raw["mapping"]["fields"]))
    assert [f.target for f in pic.fields] == [t for t, _, _ in expected]
    for target, kind, source in expected:
        view = pic.field(target)
        assert (view.kind, view.source) == (kind, source), target
    assert pic.process_code == raw["dingtalk"]["process_code"]
    assert pic.form_id == raw["target"]["form_id"]
    assert pic.bill_key == raw["target"]["bill_key"]


def test_steps_and_checks_are_the_rules(pictures: dict[str, FlowPicture]) -> None:
    petty = pictures["petty-cash"]
    amount = petty.field("FEntity.FTaxSubmitAmt")
    assert "转换 convert: money (precision 2)" in amount.steps
    assert {"必填 required", "≤ 50000", "> 0 or refused"} <= set(amount.checks)
    # the example's lookups are live: the picture says where their rows come from
    assert (
        "查表 lookup: expense_types (实时 live: kingdee_expense_items by FName → FNumber)"
        in petty.field("FEntity.FExpID").steps
    )
    assert (
        "查表 lookup: staff (实时 live: kingdee_employees via dingtalk_users "
        "(job_number = FStaffNumber, mobile = FMobile) → FStaffNumber)"
        in petty.field("FProposerID").steps
    )
    assert any("现金 → JSFS01_SYS" in s for s in petty.field("FPaySettlleTypeID").steps)
    assert "行数 rows: 1..200" in petty.field("FEntity").checks
    [total] = petty.cross_checks
    assert total.startswith("补充金额（元） (") and total.endswith(") = Σ FEntity.FTaxSubmitAmt")
    dept = pictures["department-sync"]
    assert "格式 pattern: [A-Za-z0-9_.-]{1,30}" in dept.field("FNumber").checks


@pytest.fixture
async def client(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TestClient[Any, Any]]:
    monkeypatch.setenv("DINGDEE_CONSOLE__TOKEN", "unit-token-Zq81")
    monkeypatch.setenv("DINGDEE_FLOWS_FILE", str(FLOWS))
    state = ConsoleState(ConsoleSettings(), CollectorRegistry())  # no refresh: no Kafka
    async with TestClient(TestServer(build_app(state))) as test_client:
        yield test_client


async def test_flows_page_draws_every_field(
    client: TestClient[Any, Any], raw_flows: dict[str, dict[str, Any]]
) -> None:
    signed = await client.get("/flows?token=unit-token-Zq81")
    assert signed.status == 200 and str(signed.url).endswith("/flows")
    page = html.unescape(await signed.text())
    for flow_id, raw in raw_flows.items():
        assert f'id="flow-{flow_id}"' in page
        for target, _, source in expected_fields(raw["mapping"]["fields"]):
            assert f'data-target="{target}"' in page
            assert source in page, (flow_id, target, source)
    assert "unit-token-Zq81" not in page
