"""docs/metrics.md lists exactly the metrics the services register: name, type, labels, services."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from dingdee_common.outcomes import Outcome

ROOT = Path(__file__).resolve().parents[3]
CATALOGUE = ROOT / "docs" / "metrics.md"
SERVICES = ("extractor", "transformer", "loader")
ROW = re.compile(r"^\|\s*`(?P<name>dingdee_[a-z0-9_]+)`\s*\|(?P<rest>.*)\|\s*$")

Entry = tuple[str, str, tuple[str, ...]]


def metrics_class(service: str) -> Any:
    """The class in ``dingdee_<service>.metrics`` with a ``create(registry)`` classmethod."""
    module = importlib.import_module(f"dingdee_{service}.metrics")
    found = [
        obj
        for name, obj in vars(module).items()
        if isinstance(obj, type) and name.endswith("Metrics") and obj.__module__ == module.__name__
    ]
    assert len(found) == 1, f"dingdee_{service}.metrics should define one *Metrics class: {found}"
    return found[0]


def registered(service: str) -> dict[str, Entry]:
    """Exposed metric name → (name, type, labels) of everything the service registers."""
    registry = CollectorRegistry()
    metrics_class(service).create(registry)
    out: dict[str, Entry] = {}
    # the label names of a metric that has no sample yet are only on the collector itself
    collectors: list[Any] = list(registry._collector_to_names)
    for collector in collectors:
        name = collector._name + ("_total" if collector._type == "counter" else "")
        labels = tuple(sorted(collector._labelnames))
        out[name] = (name, collector._type, labels)
    return out


def catalogue() -> dict[str, tuple[Entry, frozenset[str]]]:
    """Rows of docs/metrics.md: name → ((name, type, labels), services)."""
    rows: dict[str, tuple[Entry, frozenset[str]]] = {}
    for line in CATALOGUE.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if not match:
            continue
        cells = [c.strip() for c in match["rest"].split("|")]
        kind, labels, services = cells[0], cells[1], cells[2]
        label_set = tuple(sorted(x.strip("` ") for x in labels.split(",") if x.strip("` -")))
        name = match["name"]
        assert name not in rows, f"{name} listed twice"
        rows[name] = ((name, kind, label_set), frozenset(s.strip() for s in services.split(",")))
    return rows


class TestMetricsCatalogue:
    @pytest.mark.parametrize("service", SERVICES)
    def test_every_registered_metric_is_documented_exactly(self, service: str) -> None:
        documented = catalogue()
        for name, entry in registered(service).items():
            assert name in documented, f"{service} registers {name}, missing from docs/metrics.md"
            assert documented[name][0] == entry, f"docs/metrics.md row of {name} differs: {entry}"
            assert service in documented[name][1], f"docs/metrics.md: {name} should list {service}"

    def test_every_documented_metric_is_registered_by_the_services_it_names(self) -> None:
        by_service = {s: registered(s) for s in SERVICES}
        for name, (_, services) in catalogue().items():
            for service in services:
                assert name in by_service[service], f"docs/metrics.md: {service} has no {name}"
            others = set(SERVICES) - services
            for service in others:
                assert name not in by_service[service], f"docs/metrics.md: add {service} to {name}"

    def test_records_out_lists_exactly_the_outcome_vocabulary(self) -> None:
        row = next(
            line
            for line in CATALOGUE.read_text(encoding="utf-8").splitlines()
            if line.startswith("| `dingdee_records_out_total`")
        )
        meaning = row.rstrip(" |").rsplit("|", 1)[1]
        documented = set(re.findall(r"`([a-z_]+)`", meaning))
        assert documented == {o.value for o in Outcome}, documented
