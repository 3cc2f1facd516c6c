"""Offset tracking, micro-batching and the BatchSave answer → per-row outcome mapping."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from dingdee_common.contracts.v1 import BillReady, SourceRef
from dingdee_common.kafka.dlq import SourceRecord
from dingdee_loader.batcher import Batches, OffsetTracker, Pending
from dingdee_loader.kingdee.client import _rows
from dingdee_loader.kingdee.models import RowKind
from dingdee_loader.settings import KingdeeSettings


def pending(offset: int, form_id: str = "ER_ExpReimbursement", **options: Any) -> Pending:
    bill = BillReady(
        flow="petty-cash",
        bill_key=f"K{offset}",
        form_id=form_id,
        save_options=options,
        model={"FBillNo": f"K{offset}"},
        source=SourceRef(process_instance_id=f"pi{offset}"),
    )
    return Pending(SourceRecord("t", 0, offset, None, b"{}"), bill, suspect=False)


class TestOffsetTracker:
    def test_commit_point_is_the_first_unresolved_offset(self) -> None:
        tracker = OffsetTracker()
        for offset in (5, 6, 7, 8):
            assert tracker.add(offset)
        tracker.resolve(6)
        tracker.resolve(7)
        assert tracker.committable() is None, "5 is still open"
        tracker.resolve(5)
        assert tracker.committable() == 8
        assert tracker.committable() is None, "nothing new resolved"
        tracker.resolve(8)
        assert tracker.committable() == 9
        assert tracker.unresolved == 0

    def test_a_refetched_offset_is_not_tracked_twice(self) -> None:
        tracker = OffsetTracker()
        assert tracker.add(1) and not tracker.add(1)


class TestBatches:
    def test_split_by_form_and_options_and_size(self) -> None:
        batches = Batches(max_records=2, linger=60)
        for n in range(5):
            batches.add(pending(n))
        batches.add(pending(10, form_id="BD_Department"))
        batches.add(pending(11, IsAutoSubmitAndAudit=True))
        due = batches.due()
        assert [[p.source.offset for p in b] for b in due] == [[0, 1], [2, 3]]
        assert len(batches) == 3
        flushed = batches.due(flush=True)
        assert sorted(p.source.offset for b in flushed for p in b) == [4, 10, 11]
        assert all(len({Batches.key(p.bill) for p in b}) == 1 for b in flushed)

    def test_decimal_save_options_group_by_value(self) -> None:
        # bills decode with exact numbers, so a fractional option arrives as a Decimal
        batches = Batches(max_records=10, linger=60)
        for n, rate in enumerate((Decimal("1.10"), Decimal("1.10"), Decimal("2.5"))):
            batches.add(pending(n, Rate=rate))
        groups = batches.due(flush=True)
        assert sorted(len(b) for b in groups) == [1, 2]

    def test_linger_releases_a_partial_batch(self) -> None:
        batches = Batches(max_records=100, linger=0.05)
        batches.add(pending(1))
        assert batches.due() == []
        time.sleep(0.06)
        assert [p.source.offset for b in batches.due() for p in b] == [1]

    def test_held_bills_go_out_again_and_revoked_ones_are_dropped(self) -> None:
        batches = Batches(max_records=100, linger=60)
        held = [pending(n) for n in range(3)]
        batches.hold(held)
        dropped = batches.drop({("other", 0)})
        assert dropped == [] and len(batches) == 3
        assert batches.due(flush=True) == [held]
        batches.hold(held)
        assert batches.drop({(held[0].source.topic, held[0].source.partition)}) == held
        assert len(batches) == 0


class TestRows:
    def test_mixed_answer_maps_by_dindex_not_position(self) -> None:
        status = {
            "ErrorCode": 500,
            "IsSuccess": False,
            "MsgCode": 11,
            "SuccessEntitys": [{"Id": 7, "Number": "B", "DIndex": 2}],
            "Errors": [
                {
                    "FieldName": "FBillNo",
                    "Message": "违反字段唯一性要求：编码唯一。[A]…",
                    "DIndex": 0,
                },
                {"FieldName": "FCausa", "Message": "字段“事由”是必填项", "DIndex": 1},
                {"FieldName": "FDate", "Message": "字段“申请日期”是必填项", "DIndex": 1},
            ],
        }
        rows = _rows(status, 4)
        assert rows[2].kind is RowKind.SAVED and rows[2].kingdee_id == 7
        assert rows[0].kind is RowKind.EXISTS
        assert rows[1].kind is RowKind.REJECTED and rows[1].field == "FCausa"
        assert rows[1].message == "FCausa: 字段“事由”是必填项; FDate: 字段“申请日期”是必填项"
        assert 3 not in rows, "neither saved nor rejected: sent again"

    def test_failure_naming_no_package_rejects_all(self) -> None:
        rows = _rows({"IsSuccess": False, "MsgCode": 9, "Errors": [], "SuccessEntitys": []}, 2)
        assert [rows[i].kind for i in range(2)] == [RowKind.REJECTED, RowKind.REJECTED]


class TestSettings:
    def test_each_auth_mode_needs_its_credentials(self) -> None:
        base = {"server_url": "http://k/k3cloud", "acct_id": "a", "username": "u"}
        with pytest.raises(ValidationError, match="APP_ID"):
            KingdeeSettings(**base)
        with pytest.raises(ValidationError, match="PASSWORD"):
            KingdeeSettings(**base, auth_mode="session")
        ok = KingdeeSettings(**base, auth_mode="session", password=SecretStr("p"))
        assert ok.primary_key("BD_Department") == "FDEPTID" and ok.primary_key("X") == "FID"
