"""``dingdee doctor`` against both sandboxes over real HTTP (no Kafka): all ok for
``config/flows.yaml``, and exit 1 with one actionable line for each kind of drift or typo; the
extractor's start-up part refusing to start. The command line runs as a process where its exit
code and output are the point; the other cases run the same checks in-process (faster)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from subprocess import PIPE
from typing import Any

import httpx
import pytest
import yaml

from dingdee_common.doctor import exit_code, render
from dingdee_dev.stack import _KINGDEE_DEMO, Stack, StackConfig, start_sandbox
from dingdee_ops.cli.doctor import run_checks
from dingdee_sandbox.demo_org import DEMO_APP, PROCESS_CODES

ROOT = Path(__file__).resolve().parents[2]
FLOWS = ROOT / "config" / "flows.yaml"
Env = dict[str, str]


@pytest.fixture(scope="module")
async def sandboxes(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    workdir = tmp_path_factory.mktemp("doctor")
    (dingtalk, dt_url), (kingdee, kd_url) = await asyncio.gather(
        start_sandbox("dingtalk", workdir, "--demo", "0"), start_sandbox("kingdee", workdir)
    )
    env = {
        "DINGDEE_FLOWS_FILE": str(FLOWS),
        "DINGDEE_DINGTALK__BASE_URL": dt_url,
        "DINGDEE_EVENTS__BASE_URL": dt_url,
        "DINGDEE_EVENTS__ENABLED": "true",
        "DINGDEE_DINGTALK__APPS": json.dumps(
            {"main": {"app_key": DEMO_APP.app_key, "app_secret": DEMO_APP.app_secret}}
        ),
        "DINGDEE_KINGDEE__SERVER_URL": f"{kd_url}/k3cloud",
        **{f"DINGDEE_KINGDEE__{k}": v for k, v in _KINGDEE_DEMO.items()},
        "DINGDEE_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1",  # never contacted
    }
    try:
        yield env
    finally:
        dingtalk.stop()
        kingdee.stop()


async def doctor(env: Env, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from dingdee_ops.cli.main import main; main()", "doctor", *args,
        env={**os.environ, **env}, stdout=PIPE, stderr=PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


async def checked(env: Env, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """The same checks in-process (the command line itself is run by the first tests)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    checks = await run_checks()
    return exit_code(checks), render(checks)


def errors(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("error")]


def edited_flows(tmp_path: Path, edit: Any) -> Path:
    data = yaml.safe_load(FLOWS.read_text(encoding="utf-8"))
    edit(data["flows"][0])
    path = tmp_path / "flows.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


async def test_all_ok_for_the_shipped_flows(sandboxes: Env) -> None:
    code, out = await doctor(sandboxes)
    assert code == 0, out
    lines = out.splitlines()
    assert not errors(out) and not [x for x in lines if x.startswith("warning")], out
    for expected in (
        "ok      dingtalk/main: access token",
        "ok      dingtalk/main: stream mode",
        "ok      dingtalk/petty-cash: process_code",
        "ok      dingtalk/petty-cash: form components: 8 read(s)",
        "ok      dingtalk/department-sync: approval read",
        "ok      kingdee/5db25ac8d2b819: login: signature mode",
        "ok      kingdee/petty-cash: field keys",
        "ok      quota/main: monthly budget",
    ):
        assert any(line.startswith(expected) for line in lines), (expected, out)
    quota = next(line for line in lines if line.startswith("ok      quota/main"))
    assert "calls/month projected, budget 5,000" in quota

    code, out = await doctor(sandboxes, "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] is True
    assert {c["part"] for c in report["checks"]} == {"config", "dingtalk", "kingdee", "quota"}


async def test_make_runs_settings_pass(
    sandboxes: Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The environment ``make run`` gives the extractor and the loader (devstack), as it is."""
    stack = Stack(StackConfig(workdir=tmp_path, flows_file=FLOWS))
    stack.dingtalk_url = sandboxes["DINGDEE_DINGTALK__BASE_URL"]
    stack.kingdee_url = sandboxes["DINGDEE_KINGDEE__SERVER_URL"].removesuffix("/k3cloud")
    env = {**stack.service_env("extractor"), **stack.service_env("loader")}
    monkeypatch.delenv("DINGDEE_EVENTS__ENABLED", raising=False)
    code, out = await checked(env, monkeypatch)
    assert code == 0 and not errors(out), out
    assert "ok      quota/main: monthly budget: 2 flow(s), polling" in out


async def test_a_component_renamed_in_the_designer(
    sandboxes: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = PROCESS_CODES["petty-cash"]
    async with httpx.AsyncClient(base_url=sandboxes["DINGDEE_DINGTALK__BASE_URL"]) as http:
        renamed = await http.post(
            f"/_sandbox/schemas/{code}", json={"rename": {"补单事由": "报销事由"}}
        )
        assert renamed.status_code == 200
        try:
            exit_code, out = await checked(sandboxes, monkeypatch)
        finally:
            await http.post(f"/_sandbox/schemas/{code}", json={"reset": True})
    assert exit_code == 1
    [line] = errors(out)
    assert line.startswith("error   dingtalk/petty-cash: component 补单事由:")
    assert "mapping.fields.FCausa reads '补单事由'" in line and "报销事由" in line
    assert "rename it in flows.yaml" in line


async def test_a_mapping_naming_a_missing_component_or_column(
    sandboxes: Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def edit(flow: dict[str, Any]) -> None:
        flow["mapping"]["fields"]["FCausa"]["component"] = "事由说明"
        flow["mapping"]["fields"]["FEntity"]["rows"]["fields"]["FRemark"]["cell"] = "摘要"

    code, out = await checked(
        {**sandboxes, "DINGDEE_FLOWS_FILE": str(edited_flows(tmp_path, edit))}, monkeypatch
    )
    assert code == 1
    header, column = errors(out)
    assert header.startswith("error   dingtalk/petty-cash: component 事由说明:")
    assert column.startswith("error   dingtalk/petty-cash: column 费用明细/摘要:")
    assert "(it has: 日期, 票据, 费用类型, 金额, 项目)" in column


async def test_a_read_of_an_incompatible_type(
    sandboxes: Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def edit(flow: dict[str, Any]) -> None:
        flow["mapping"]["fields"]["FCausa"]["convert"] = "date"
        flow["mapping"]["fields"]["FCausa"]["component"] = "支付方式"

    code, out = await checked(
        {**sandboxes, "DINGDEE_FLOWS_FILE": str(edited_flows(tmp_path, edit))}, monkeypatch
    )
    assert code == 1
    [line] = errors(out)
    assert "reads a DDSelectField: convert date needs ['DDDateField']" in line


async def test_a_process_code_that_does_not_exist(
    sandboxes: Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def edit(flow: dict[str, Any]) -> None:
        flow["dingtalk"]["process_code"] = "PROC-BYJ-TYPO"

    code, out = await checked(
        {**sandboxes, "DINGDEE_FLOWS_FILE": str(edited_flows(tmp_path, edit))}, monkeypatch
    )
    assert code == 1
    [line] = errors(out)
    assert line.startswith("error   dingtalk/petty-cash: process_code:")
    assert "formNotExist" in line and "check dingtalk.process_code" in line


async def test_a_missing_kingdee_field_key(
    sandboxes: Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def edit(flow: dict[str, Any]) -> None:
        fields = flow["mapping"]["fields"]
        fields["FCausaX"] = fields.pop("FCausa")
        fields["FEntity"]["rows"]["fields"]["FRemarkX"] = {"cell": "项目"}

    code, out = await checked(
        {**sandboxes, "DINGDEE_FLOWS_FILE": str(edited_flows(tmp_path, edit))}, monkeypatch
    )
    assert code == 1
    header, entry = errors(out)
    assert header.startswith("error   kingdee/petty-cash: field FCausaX:")
    assert "mapping.fields.FCausaX sets FCausaX, which ER_ExpReimbursement does not have" in header
    assert entry.startswith("error   kingdee/petty-cash: field FRemarkX:")


async def test_a_wrong_app_secret(sandboxes: Env) -> None:
    apps = {"main": {"app_key": DEMO_APP.app_key, "app_secret": "wrong"}}
    code, out = await doctor({**sandboxes, "DINGDEE_DINGTALK__APPS": json.dumps(apps)})
    assert code == 1
    [line] = errors(out)
    assert line.startswith("error   dingtalk/main: access token:")
    assert "check DINGDEE_DINGTALK__APPS app_key/app_secret" in line


async def test_a_wrong_kingdee_secret(sandboxes: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = await checked({**sandboxes, "DINGDEE_KINGDEE__APP_SECRET": "0" * 32}, monkeypatch)
    assert code == 1
    [line] = errors(out)
    assert line.startswith("error   kingdee/5db25ac8d2b819: login:")
    assert "check DINGDEE_KINGDEE__APP_ID" in line


async def test_a_budget_that_cannot_fit(sandboxes: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    apps = {
        "main": {
            "app_key": DEMO_APP.app_key,
            "app_secret": DEMO_APP.app_secret,
            "monthly_call_budget": 2000,
            "approvals_per_month": 3000,
        }
    }
    code, out = await checked(
        {**sandboxes, "DINGDEE_DINGTALK__APPS": json.dumps(apps)}, monkeypatch
    )
    assert code == 1
    [line] = errors(out)
    assert line.startswith("error   quota/main: monthly budget:")
    assert "3,000 approvals/month" in line and "budget 2,000" in line
    assert "raise the app's monthly_call_budget" in line


async def start(module: str, env: Env) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module,
        env={**os.environ, **env, "DINGDEE_HTTP__PORT": "0"}, stdout=PIPE, stderr=PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


async def test_the_extractor_refuses_a_budget_that_cannot_fit_before_kafka(
    sandboxes: Env,
) -> None:
    apps = {
        "main": {
            "app_key": DEMO_APP.app_key,
            "app_secret": DEMO_APP.app_secret,
            # at least a get each: more than 90 % of 5 000 however far polling stretches
            "approvals_per_month": 5000,
        }
    }
    env = {**sandboxes, "DINGDEE_DINGTALK__APPS": json.dumps(apps), "DINGDEE_EVENTS__ENABLED": "0"}
    code, out = await start("dingdee_extractor", env)
    assert code == 1, out
    [fatal] = [json.loads(x)["error"] for x in out.splitlines() if '"extractor.fatal"' in x]
    assert "start-up check failed: error   quota/main: monthly budget" in fatal
    assert "polling, 5,000 approvals/month" in fatal and "budget 5,000" in fatal
    assert "DINGDEE_DINGTALK__ALLOW_OVER_BUDGET=true starts anyway" in fatal
    assert "Kafka" not in fatal and "KafkaConnectionError" not in out, "it fails before Kafka"


async def test_an_app_without_the_approval_permissions(
    sandboxes: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with httpx.AsyncClient(base_url=sandboxes["DINGDEE_DINGTALK__BASE_URL"]) as http:
        await http.post("/_sandbox/faults", json={"forbidden_apps": [DEMO_APP.app_key]})
        try:
            code, out = await checked(sandboxes, monkeypatch)
        finally:
            await http.post("/_sandbox/faults", json={"forbidden_apps": []})
    assert code == 1
    found = errors(out)
    assert len(found) == 4, out  # per flow: the template and the listing
    schema = [line for line in found if ": process_code:" in line]
    listing = [line for line in found if ": approval read:" in line]
    assert len(schema) == len(listing) == 2
    assert all("AccessTokenPermissionDenied" in x and "Workflow.Form.Read" in x for x in schema)
    assert all("60011" in x and "grant the app the approval read permission" in x for x in listing)
