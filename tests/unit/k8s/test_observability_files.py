"""Alert rules (promtool), the PrometheusRule twin, dashboards and probe paths."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from types import ModuleType

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry

from dingdee_common.observability.server import Health, OpsServer
from dingdee_common.settings import HttpServerSettings
from tests.unit.k8s.conftest import K8S, ROOT

OBS = K8S / "observability"
RULES = OBS / "rules" / "dingdee.rules.yml"
ALERTS = {
    "DingdeeDeadLettersGrowing",
    "DingdeeFloodGuardTripped",
    "DingdeeErrorRatioHigh",
    "DingdeeConsumerLagHigh",
    "DingdeeExtractorStale",
    "DingdeeEventStreamDisconnected",
    "DingdeeEventStreamSilent",
    "DingdeeCallBudgetAtRisk",
    "DingdeeDingTalkUnavailable",
    "DingdeeDingTalkPunished",
    "DingdeeServiceNotReady",
    "DingdeeTargetDown",
    "DingdeeKingdeeUnavailable",
    "DingdeeParkedTooLong",
    "DingdeeFollowupsStuck",
    "DingdeeRefdataNeverRefreshed",
}


def promtool() -> str:
    found = shutil.which("promtool")
    if found:
        return found
    if os.geteuid() != 0 and not os.environ.get("CI"):
        pytest.skip("promtool missing and not root: apt-get install prometheus (make promtool)")
    pytest.fail("promtool missing: run `make promtool` (Debian package prometheus)")


def build_module() -> ModuleType:
    """``build.py`` loaded by path; its sibling ``panels.py`` found as when it runs as a script."""
    if str(OBS) not in sys.path:
        sys.path.append(str(OBS))
    spec = importlib.util.spec_from_file_location("dingdee_k8s_build", OBS / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TestAlertRules:
    def test_promtool_check_rules(self) -> None:
        done = subprocess.run(  # noqa: S603 - fixed argv
            [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def test_promtool_unit_tests(self) -> None:
        done = subprocess.run(  # noqa: S603 - fixed argv
            [promtool(), "test", "rules", "dingdee.rules.test.yml"],
            cwd=RULES.parent,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def test_every_alert_has_a_runbook_paragraph_and_a_test(self) -> None:
        groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
        rules = [r for g in groups for r in g["rules"]]
        assert {r["alert"] for r in rules} == ALERTS
        runbooks = (ROOT / "docs" / "runbooks.md").read_text(encoding="utf-8").lower()
        tests = (RULES.parent / "dingdee.rules.test.yml").read_text(encoding="utf-8")
        for rule in rules:
            anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
            assert f"## {anchor}" in runbooks, f"docs/runbooks.md has no section for {anchor}"
            assert f"alertname: {rule['alert']}" in tests, f"no promtool test for {rule['alert']}"

    def test_prometheus_rule_carries_the_same_groups(self) -> None:
        generated = yaml.safe_load((OBS / "prometheusrule.yaml").read_text(encoding="utf-8"))
        plain = yaml.safe_load(RULES.read_text(encoding="utf-8"))
        assert generated["spec"]["groups"] == plain["groups"], (
            "regenerate: .venv/bin/python k8s/observability/build.py"
        )
        assert (OBS / "prometheusrule.yaml").read_text(
            encoding="utf-8"
        ) == build_module().prometheus_rule()


class TestDashboards:
    def test_committed_json_is_what_build_py_makes(self) -> None:
        for name, text in build_module().render().items():
            path = OBS / "dashboards" / name
            assert path.read_text(encoding="utf-8") == text, (
                f"regenerate {name}: python k8s/observability/build.py"
            )

    @pytest.mark.parametrize("name", ["pipeline.json", "dingtalk.json", "kingdee.json"])
    def test_pinned_datasource_and_flow_variable(self, name: str) -> None:
        board = json.loads((OBS / "dashboards" / name).read_text(encoding="utf-8"))
        assert [v["name"] for v in board["templating"]["list"]] == ["flow"]
        assert board["panels"], f"{name} has no panels"
        for panel in board["panels"]:
            assert panel["datasource"] == {"type": "prometheus", "uid": "dingdee-prometheus"}
            assert panel["targets"] and all(t["expr"] for t in panel["targets"])


class TestProbePaths:
    async def test_probe_paths_are_served_by_the_ops_server(self) -> None:
        """The paths the Deployments probe exist on the ops port (never a 404)."""
        server = OpsServer(
            HttpServerSettings(host="127.0.0.1", port=0), CollectorRegistry(), Health()
        )
        await server.start()
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
                for path in ("/healthz", "/readyz", "/metrics"):
                    response = await client.get(path)
                    assert response.status_code in (200, 503), path
        finally:
            await server.stop()


def _used_metrics(text: str) -> set[str]:
    names = set(re.findall(r"\bdingdee_[a-z0-9_]+", text))
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}


def _catalogued() -> set[str]:
    doc = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    return set(re.findall(r"^\|\s*`(dingdee_[a-z0-9_]+)`", doc, flags=re.MULTILINE))


class TestRealMetricNames:
    """Queries may only use catalogued metrics; the catalogue test ties those to the registries."""

    def test_alert_rules_use_real_metrics(self) -> None:
        groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
        exprs = " ".join(r["expr"] for g in groups for r in g["rules"])
        unknown = _used_metrics(exprs) - _catalogued()
        assert not unknown, f"alert rules use metrics no service registers: {sorted(unknown)}"

    @pytest.mark.parametrize("name", ["pipeline.json", "dingtalk.json", "kingdee.json"])
    def test_dashboards_use_real_metrics(self, name: str) -> None:
        board = json.loads((OBS / "dashboards" / name).read_text(encoding="utf-8"))
        exprs = " ".join(t["expr"] for p in board["panels"] for t in p["targets"])
        exprs += " " + board["templating"]["list"][0]["query"]
        unknown = _used_metrics(exprs) - _catalogued()
        assert not unknown, f"{name} uses metrics no service registers: {sorted(unknown)}"


def _rules() -> dict[str, dict[str, object]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"]}


def _alert(name: str, **kept: str) -> dict[str, str]:
    """The labels an alert of ``name`` carries: its rule's static labels and what its
    expression keeps of the series (``kept``, checked against the expression)."""
    rule = _rules()[name]
    expr = str(rule["expr"])
    if " by (" in expr:
        grouped = re.search(r" by \(([^)]*)\)", expr)
        assert grouped, expr
        assert set(kept) <= {n.strip() for n in grouped.group(1).split(",")}, (name, expr)
    return {"alertname": name, **dict(rule["labels"]), **kept}  # type: ignore[call-overload]


def _matches(matchers: list[dict[str, str]], labels: dict[str, str]) -> bool:
    """Alertmanager's matchers: ``=`` exact, ``=~`` a fully anchored regular expression."""
    for m in matchers:
        value = labels.get(m["name"], "")
        equal = m.get("matchType", "=") == "="
        if (value != m["value"]) if equal else not re.fullmatch(m["value"], value):
            return False
    return True


def _inhibited(target: dict[str, str], firing: list[dict[str, str]]) -> bool:
    config = yaml.safe_load((OBS / "alertmanagerconfig.yaml").read_text(encoding="utf-8"))
    return any(
        _matches(rule["targetMatch"], target)
        and _matches(rule["sourceMatch"], source)
        and all(source.get(n, "") == target.get(n, "") for n in rule["equal"])
        for rule in config["spec"]["inhibitRules"]
        for source in firing
    )


class TestInhibition:
    """A DingTalk or Kingdee outage pages once: the stage it stops is not paged as not ready."""

    def test_an_outage_inhibits_not_ready_of_the_stage_it_stops_only(self) -> None:
        ns = "dingdee"
        kingdee = _alert("DingdeeKingdeeUnavailable", namespace=ns, job="dingdee-loader")
        dingtalk = _alert("DingdeeDingTalkUnavailable", namespace=ns, app="main")
        stuck = _alert("DingdeeFollowupsStuck", namespace=ns)
        for source, stage in ((kingdee, "loader"), (dingtalk, "extractor"), (stuck, "extractor")):
            assert _inhibited(_alert("DingdeeServiceNotReady", namespace=ns, stage=stage), [source])
            for other in {"extractor", "transformer", "loader"} - {stage}:
                target = _alert("DingdeeServiceNotReady", namespace=ns, stage=other)
                assert not _inhibited(target, [source]), f"{source['alertname']} hid {other}"
            elsewhere = _alert("DingdeeServiceNotReady", namespace="other", stage=stage)
            assert not _inhibited(elsewhere, [source]), "another namespace's outage"

    def test_nothing_else_is_inhibited(self) -> None:
        ns = "dingdee"
        firing = [
            _alert("DingdeeKingdeeUnavailable", namespace=ns, job="dingdee-loader"),
            _alert("DingdeeDingTalkUnavailable", namespace=ns, app="main"),
        ]
        for name in ALERTS - {"DingdeeServiceNotReady"}:
            assert not _inhibited({**_alert(name), "namespace": ns, "stage": "loader"}, firing)
        not_ready = _alert("DingdeeServiceNotReady", namespace=ns, stage="loader")
        assert not _inhibited(not_ready, []), "no outage, no inhibition"
