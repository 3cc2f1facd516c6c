"""Rendered kustomize overlays, shared by the manifest tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "k8s"
OVERLAYS = ("dev", "prod")
SERVICES = {"extractor": 9401, "transformer": 9402, "loader": 9403}

Obj = dict[str, Any]


def render(overlay: str) -> list[Obj]:
    """``kubectl kustomize k8s/overlays/<overlay>`` as a list of objects."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is needed to render the kustomize overlays (apt-get install kubectl)")
    done = subprocess.run(  # noqa: S603 - fixed argv
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"kustomize build of {overlay} failed: {done.stderr}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


_CACHE: dict[str, list[Obj]] = {}


@pytest.fixture(params=OVERLAYS)
def objects(request: pytest.FixtureRequest) -> list[Obj]:
    overlay: str = request.param
    if overlay not in _CACHE:
        _CACHE[overlay] = render(overlay)
    return _CACHE[overlay]


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def by_name(objects: list[Obj], kind: str, name: str) -> Obj:
    found = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    assert found, f"no {kind} named {name}"
    return found[0]
