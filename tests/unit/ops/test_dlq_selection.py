"""DLQ selection and replay bookkeeping, without a broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dingdee_common.contracts.v1 import ReplayAudit
from dingdee_common.errors import ErrorClass
from dingdee_common.kafka import headers as hdr
from dingdee_common.kafka.dlq import SourceRecord, dead_letter_headers
from dingdee_ops.dlq.records import DeadLetter, Selection, parse_time
from dingdee_ops.dlq.replay import _Position, _ranges
from dingdee_ops.dlq.scan import handled_offsets

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def letter(
    offset: int,
    *,
    stage: str = "loader",
    error_class: ErrorClass = ErrorClass.PERMANENT,
    error_type: str = "kingdee_row_rejected",
    message: str = "费用类型 不存在",
    flow: str = "petty-cash",
    key: str = "BX-1",
    source_id: str = "inst-1",
    failed_at: datetime = T0,
) -> DeadLetter:
    src = SourceRecord(
        topic="p.bills.ready",
        partition=0,
        offset=offset,
        key=key.encode(),
        value=b"{}",
        headers=tuple(hdr.build(flow, source_id)),
    )
    headers = dead_letter_headers(
        src,
        stage=stage,
        error_class=error_class,
        error_type=error_type,
        message=message,
        attempts=1,
        failed_at=failed_at,
    )
    return DeadLetter(f"p.dlq.{stage}", 0, offset, 0, src.key, src.value, tuple(headers))


class TestSelection:
    def test_empty_selection_matches_everything(self) -> None:
        assert Selection().matches(letter(0))

    @pytest.mark.parametrize(
        ("selection", "expected"),
        [
            (Selection(stages=("transformer",)), False),
            (Selection(stages=("loader",)), True),
            (Selection(error_classes=frozenset({"poison"})), False),
            (Selection(error_classes=frozenset({"permanent", "poison"})), True),
            (Selection(error_types=frozenset({"kingdee_row_rejected"})), True),
            (Selection(error_types=frozenset({"mapping_error"})), False),
            (Selection(flows=frozenset({"department-sync"})), False),
            (Selection(flows=frozenset({"petty-cash"})), True),
            (Selection(keys=frozenset({"BX-1"})), True),
            (Selection(keys=frozenset({"inst-1"})), True),
            (Selection(keys=frozenset({"BX-2"})), False),
            (Selection(pattern="费用类型.*不存在"), True),
            (Selection(pattern="^timeout"), False),
            (Selection(since=T0), True),
            (Selection(since=T0 + timedelta(seconds=1)), False),
            (Selection(until=T0), False),
            (Selection(until=T0 + timedelta(seconds=1)), True),
            (Selection(offsets=frozenset({0})), True),
            (Selection(offsets=frozenset({1})), False),
        ],
    )
    def test_each_criterion(self, selection: Selection, expected: bool) -> None:
        assert selection.matches(letter(0)) is expected

    def test_criteria_combine_with_and(self) -> None:
        both = Selection(flows=frozenset({"petty-cash"}), error_classes=frozenset({"poison"}))
        assert not both.matches(letter(0))

    def test_unknown_stage_and_bad_pattern_are_refused(self) -> None:
        with pytest.raises(ValueError, match="未知阶段"):
            Selection(stages=("nope",))
        with pytest.raises(ValueError, match=r"正则|模式"):
            Selection(pattern="(")

    def test_describe_is_plain_json(self) -> None:
        described = Selection(flows=frozenset({"b", "a"}), since=T0).describe()
        assert described["flows"] == ["a", "b"]
        assert described["since"] == T0.isoformat()

    def test_parse_time_defaults_to_utc(self) -> None:
        assert parse_time("2026-11-01T08:00:00") == T0
        assert parse_time("2026-11-01T16:00:00+08:00") == T0
        assert parse_time("2026-11-01T08:00:00Z") == T0


class TestLetterFields:
    def test_headers_are_read(self) -> None:
        d = letter(7, stage="transformer", error_class=ErrorClass.POISON, error_type="undecodable")
        assert (d.stage, d.error_class, d.error_type) == ("transformer", "poison", "undecodable")
        assert d.original_topic == "p.bills.ready"
        assert d.replay_count == 0
        assert d.failed_at == T0
        assert d.coordinates == "p.dlq.transformer/0/7"


class TestBookkeeping:
    def test_ranges_merge_consecutive_offsets(self) -> None:
        assert _ranges([1, 2, 3, 7, 9, 10]) == [(1, 3), (7, 7), (9, 10)]
        assert _ranges([]) == []

    def test_commit_stops_at_first_unhandled_record(self) -> None:
        pos = _Position(committed=None, end=6, scanned=[0, 1, 2, 3, 4, 5], handled={0, 1, 3})
        assert pos.commit_offset() == 2

    def test_commit_moves_to_end_when_everything_is_handled(self) -> None:
        pos = _Position(committed=2, end=6, scanned=[2, 3, 4, 5], handled={2, 3, 4, 5})
        assert pos.commit_offset() == 6

    def test_no_commit_when_nothing_moved(self) -> None:
        assert _Position(committed=2, end=6, scanned=[2, 3], handled={3}).commit_offset() is None
        assert _Position(committed=None, end=0).commit_offset() is None

    def test_handled_offsets_ignore_dry_runs(self) -> None:
        def audit(dry: bool, ranges: list[tuple[int, int]]) -> ReplayAudit:
            return ReplayAudit(
                run_id="r",
                who="t",
                started_at=T0,
                dry_run=dry,
                filters={},
                counts={},
                outcome="completed",
                handled={"p.dlq.loader:0": ranges},
            )

        got = handled_offsets([audit(False, [(0, 2), (5, 5)]), audit(True, [(8, 9)])])
        assert got == {"p.dlq.loader:0": {0, 1, 2, 5}}
