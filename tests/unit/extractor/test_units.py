"""Extractor building blocks without network: windows, fingerprints, token buckets, flow config."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from dingdee_common.errors import FatalError
from dingdee_extractor.dingtalk.ratelimit import TokenBucket
from dingdee_extractor.fingerprint import fingerprint, is_terminal
from dingdee_extractor.flows import load_sources
from dingdee_extractor.poller import DAY_MS, split_windows

ROOT = Path(__file__).resolve().parents[3]


class TestSplitWindows:
    def test_windows_cover_the_range_without_gaps_or_overlap(self) -> None:
        windows = list(split_windows(0, 250 * DAY_MS, 120 * DAY_MS))
        assert windows[0][0] == 0 and windows[-1][1] == 250 * DAY_MS
        for (_, hi), (lo, _) in itertools.pairwise(windows):
            assert lo == hi + 1
        assert all(hi - lo + 1 <= 120 * DAY_MS for lo, hi in windows)
        assert len(windows) == 3

    def test_empty_when_end_before_start(self) -> None:
        assert list(split_windows(10, 5, 100)) == []


BASE = {
    "status": "RUNNING",
    "result": "",
    "form_component_values": [{"name": "金额", "value": "1"}],
}


class TestFingerprint:
    def test_changes_with_status_and_form(self) -> None:
        fp = fingerprint(BASE)
        assert fingerprint({**BASE, "status": "COMPLETED", "result": "agree"}) != fp
        assert fingerprint({**BASE, "form_component_values": []}) != fp

    def test_ignores_fields_that_do_not_matter(self) -> None:
        noisy = {**BASE, "tasks": [{"taskid": "1"}], "operation_records": [1]}
        assert fingerprint(noisy) == fingerprint(BASE)

    @pytest.mark.parametrize(
        ("status", "terminal"),
        [("RUNNING", False), ("NEW", False), ("COMPLETED", True), ("TERMINATED", True)],
    )
    def test_terminal_statuses(self, status: str, terminal: bool) -> None:
        assert is_terminal({"status": status}) is terminal


class TestTokenBucket:
    async def test_rate_is_never_exceeded_in_any_second(self) -> None:
        loop = asyncio.get_running_loop()
        bucket = TokenBucket(rate=50)
        stamps = []
        for _ in range(120):
            await bucket.acquire()
            stamps.append(loop.time())
        for i, t in enumerate(stamps):
            in_window = [s for s in stamps[i:] if s - t < 1.0]
            assert len(in_window) <= 51

    async def test_penalise_delays_the_next_acquire(self) -> None:
        bucket = TokenBucket(rate=100)
        await bucket.acquire()
        bucket.penalise(0.2)
        assert await bucket.acquire() >= 0.2


class TestFlowSources:
    def test_example_flows(self) -> None:
        sources = load_sources(ROOT / "config" / "flows.yaml", frozenset({"main"}))
        assert {s.flow: s.process_code for s in sources} == {
            "petty-cash": "PROC-BYJ-7F3A2C91",
            "department-sync": "PROC-DEPT-5B8E1D04",
        }

    def test_unknown_app_names_flow_and_key(self) -> None:
        with pytest.raises(FatalError, match=r"flow 'petty-cash' dingtalk.app: 'main' is not in"):
            load_sources(ROOT / "config" / "flows.yaml", frozenset({"other"}))

    def test_bad_section_names_flow_and_key(self, tmp_path: Path) -> None:
        bad = tmp_path / "flows.yaml"
        bad.write_text(
            "flows:\n  - id: x\n    dingtalk: {app: main, process_code: P, start_date: soon}\n",
            encoding="utf-8",
        )
        with pytest.raises(FatalError, match=r"flow 'x' dingtalk.start_date: Input should be"):
            load_sources(bad, frozenset({"main"}))
