"""Every benchmark module imports: `make bench` is not part of `make test`, so a moved module
(the layers step moved the broker to dingdee_dev) would otherwise be found only when benching."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"
MODULES = sorted(p.stem for p in BENCH.glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("name", MODULES)
def test_bench_module_imports(name: str) -> None:
    importlib.import_module(f"bench.{name}")


def test_every_bench_module_is_seen() -> None:
    assert {"bench_gapnet", "bench_backpressure", "bench_transformer"} <= set(MODULES)
