"""The console's Deployment, Service and Ingress: oauth2-proxy in front, the console on loopback
only (nothing reaches it but through the proxy), ops endpoints like every other process."""

from __future__ import annotations

from typing import Any

from dingdee_ops.console.settings import ConsoleSettings
from tests.unit.k8s.conftest import Obj, by_name
from tests.unit.k8s.test_manifests import is_settings_field


def containers(objects: list[Obj]) -> dict[str, Obj]:
    pod = by_name(objects, "Deployment", "dingdee-console")["spec"]["template"]["spec"]
    return {c["name"]: c for c in pod["containers"]}


def env(objects: list[Obj], c: Obj) -> dict[str, Any]:
    names: dict[str, Any] = {}
    for source in c.get("envFrom", []):
        names.update(by_name(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    for item in c.get("env", []):
        names[item["name"]] = item.get("value", item.get("valueFrom"))
    return names


def test_the_console_listens_on_loopback_behind_the_proxy(objects: list[Obj]) -> None:
    parts = containers(objects)
    assert set(parts) == {"console", "oauth2-proxy"}
    console, proxy = parts["console"], parts["oauth2-proxy"]
    settings = env(objects, console)
    assert settings["DINGDEE_CONSOLE__AUTH"] == "proxy"
    assert settings["DINGDEE_CONSOLE__HOST"] == "127.0.0.1"
    port = settings["DINGDEE_CONSOLE__PORT"]
    assert f"--upstream=http://127.0.0.1:{port}/" in proxy["args"]
    for flag in ("--pass-user-headers=true", "--skip-auth-strip-headers=true"):
        assert flag in proxy["args"]
    assert console["args"] == ["console"]
    assert console["ports"] == [{"name": "ops", "containerPort": 9404, "protocol": "TCP"}]
    assert settings["DINGDEE_HTTP__PORT"] == "9404"
    assert console["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "ops"}
    assert console["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ops"}
    for c in (console, proxy):
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False


def test_console_env_names_are_settings_fields(objects: list[Obj]) -> None:
    for name in env(objects, containers(objects)["console"]):
        if not name.startswith("OTEL_"):
            assert is_settings_field(ConsoleSettings, name), name


def test_service_and_ingress_reach_only_the_proxy(objects: list[Obj]) -> None:
    service = by_name(objects, "Service", "dingdee-console")
    ports = {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}
    assert ports == {"http": "http", "ops": "ops"}
    proxy_ports = containers(objects)["oauth2-proxy"]["ports"]
    assert [p["name"] for p in proxy_ports] == ["http"]
    ingress = by_name(objects, "Ingress", "dingdee-console")
    [rule] = ingress["spec"]["rules"]
    [path] = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": "dingdee-console", "port": {"name": "http"}}
    assert ingress["spec"]["tls"], "the sign-in cookie needs TLS"
    policy = by_name(objects, "NetworkPolicy", "dingdee-console")
    assert [p["port"] for r in policy["spec"]["ingress"] for p in r["ports"]] == ["http"]
