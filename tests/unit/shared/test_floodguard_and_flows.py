"""The flood guard trips on a dead-letter flood; flows.yaml errors name the flow and key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from dingdee_common.errors import ErrorClass, FatalError
from dingdee_common.floodguard import FloodGuard
from dingdee_common.flows import load_flows
from dingdee_common.settings import FloodGuardSettings

ROOT = Path(__file__).resolve().parents[3]


class TestFloodGuard:
    def test_trips_on_ratio_past_min_records(self) -> None:
        guard = FloodGuard(FloodGuardSettings(window=10, min_records=10, max_dead_letter_ratio=0.5))
        outcomes = [True, False] * 5  # exactly 50 %: not above the limit
        assert not any(guard.record(o) for o in outcomes)
        assert not guard.record(True)  # the oldest (dead) record slides out: still 5 of 10
        assert guard.record(True)  # 6 of the last 10
        assert guard.tripped and "6 of the last 10" in (guard.tripped_reason or "")

    def test_trips_on_consecutive_run(self) -> None:
        guard = FloodGuard(FloodGuardSettings(max_consecutive=3, min_records=100))
        assert [guard.record(True) for _ in range(3)] == [False, False, True]

    def test_counts_bad_data_classes(self) -> None:
        guard = FloodGuard(FloodGuardSettings(max_consecutive=3, min_records=100))
        outcomes = [ErrorClass.PERMANENT, ErrorClass.POISON, ErrorClass.PERMANENT]
        assert [guard.record(o) for o in outcomes] == [False, False, True]

    def test_an_outage_never_trips_it(self) -> None:
        """Exhausted records (transient failures) are not evidence of bad data: not counted."""
        guard = FloodGuard(FloodGuardSettings(min_records=100, max_consecutive=2))
        assert not any(guard.record(ErrorClass.EXHAUSTED) for _ in range(1000))
        assert not guard.tripped
        assert not guard.record(ErrorClass.PERMANENT)
        guard.record(ErrorClass.EXHAUSTED)  # does not break the run of bad records either
        assert guard.record(ErrorClass.POISON)

    def test_disabled_never_trips(self) -> None:
        guard = FloodGuard(FloodGuardSettings(enabled=False, max_consecutive=1))
        assert not any(guard.record(True) for _ in range(50))


class TestFlowsFile:
    def test_example_flows_load(self) -> None:
        flows = load_flows(ROOT / "config" / "flows.yaml")
        assert [f.id for f in flows.enabled()] == ["petty-cash", "department-sync"]

    def test_error_names_flow_and_key(self, tmp_path: Path) -> None:
        bad = tmp_path / "flows.yaml"
        bad.write_text(
            "flows:\n  - id: petty-cash\n    dingtalk: {}\n    mappings: {}\n", encoding="utf-8"
        )
        with pytest.raises(FatalError) as info:
            load_flows(bad)
        assert "flow 'petty-cash' mappings: Extra inputs are not permitted" in str(info.value)

    def test_duplicate_ids_rejected(self, tmp_path: Path) -> None:
        bad = tmp_path / "flows.yaml"
        bad.write_text(
            "flows:\n  - {id: a, dingtalk: {}}\n  - {id: a, dingtalk: {}}\n", encoding="utf-8"
        )
        with pytest.raises(FatalError, match="declared twice"):
            load_flows(bad)

    def test_missing_file_names_the_setting(self, tmp_path: Path) -> None:
        with pytest.raises(FatalError, match="DINGDEE_FLOWS_FILE"):
            load_flows(tmp_path / "nope.yaml")
