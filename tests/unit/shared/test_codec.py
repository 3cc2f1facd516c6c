"""Decoding a message either yields the contract model or a poison error that says why."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from dingdee_common.codec import decode_model, encode_model
from dingdee_common.contracts import ApprovalSnapshot
from dingdee_common.errors import PoisonMessageError

V1 = frozenset({1})


def snapshot() -> ApprovalSnapshot:
    return ApprovalSnapshot(
        flow="petty-cash",
        process_code="PROC-BYJ-7F3A2C91",
        process_instance_id="Xk3p9QwLr2aBc7dEf0GhIj00891717403597",
        business_id="202406031633000123456",
        status="COMPLETED",
        result="agree",
        fetched_at=datetime(2026, 11, 28, tzinfo=UTC),
        fingerprint="abc",
        instance={"title": "张三提交的备用金补单"},
    )


class TestEncode:
    def test_bytes_are_the_json_of_the_json_dump(self) -> None:
        """One serializer pass gives what dumping to JSON types and then to bytes gives."""
        snap = snapshot().model_copy(
            update={
                "instance": {"title": "备用金", "amount": 1204.5, "rows": [{"n": 1}], "x": None}
            }
        )
        assert encode_model(snap) == orjson.dumps(snap.model_dump(mode="json", by_alias=True))


class TestDecode:
    def test_round_trip_keeps_chinese_text(self) -> None:
        data = encode_model(snapshot())
        assert "张三".encode() in data
        assert decode_model(data, ApprovalSnapshot, supported_versions=V1) == snapshot()

    @pytest.mark.parametrize(
        ("data", "code"),
        [
            (b"", "empty_value"),
            (None, "empty_value"),
            (b"\xff\xfe not json", "undecodable"),
            (b"[1, 2]", "undecodable"),
            (b'{"schema_version": 99}', "unknown_schema_version"),
            (b'{"schema_version": 1, "flow": "x"}', "contract_violation"),
        ],
    )
    def test_bad_bytes_are_poison(self, data: bytes | None, code: str) -> None:
        with pytest.raises(PoisonMessageError) as info:
            decode_model(data, ApprovalSnapshot, supported_versions=V1)
        assert info.value.error_type == code
