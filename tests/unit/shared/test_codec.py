"""Decoding a message either yields the contract model or a poison error that says why."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import orjson
import pytest
from pydantic import BaseModel

from dingdee_common.codec import decode_model, dumps, encode_model, loads
from dingdee_common.contracts import ApprovalSnapshot
from dingdee_common.contracts import v1 as contracts
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


def _pydantic(model: BaseModel) -> bytes:
    return model.__pydantic_serializer__.to_json(model, by_alias=True)


CST = timezone(timedelta(hours=8))
SOURCE = contracts.SourceRef(process_instance_id="pi-1", business_id=None, fingerprint="fp")
EVERY_CONTRACT: list[BaseModel] = [
    snapshot().model_copy(
        update={
            "fetched_at": datetime(2026, 11, 28, 9, 30, 1, 250, tzinfo=CST),
            "instance": {"title": "张三", "n": 1, "f": 1204.5, "big": 1e16, "x": None, "ok": True},
        }
    ),
    contracts.BillReady(
        flow="petty-cash",
        bill_key="BYJ1",
        form_id="ER_ExpReimbursement",
        save_options={"NeedReturnFields": ["FBillNo"], "IsAutoSubmitAndAudit": False},
        model={"FID": 0, "FEntity": [{"FAmt": 0.1, "FName": "高铁票"}], "FRate": 1.0},
        source=SOURCE,
        mapped_at=datetime(2026, 11, 29, 14, 0, tzinfo=UTC),
    ),
    contracts.BillResult(
        flow="petty-cash",
        bill_key="BYJ1",
        form_id="ER_ExpReimbursement",
        outcome=contracts.BillOutcome.ALREADY_EXISTS,
        kingdee_id=100234,
        number="BYJ1",
        source=SOURCE,
        latency_seconds=0.25,
    ),
    contracts.Checkpoint(
        flow="petty-cash",
        watermark_ms=1_793_667_600_000,
        open_instances={"pi-2": contracts.OpenInstance(create_time_ms=1, fingerprint=None)},
        emitted={"pi-3": contracts.EmittedInstance(fingerprint="f", create_time_ms=2)},
        usage=contracts.CallUsage(app="main", month="2026-11", since_ms=3, list_calls=4),
    ),
    contracts.ReplayAudit(
        run_id="r1",
        who="ops",
        started_at=datetime(2026, 11, 29, tzinfo=UTC),
        dry_run=True,
        filters={"stage": "loader"},
        counts={"copied": 2},
        outcome="done",
        handled={"dlq.loader:0": [(3, 7)]},
    ),
    _WORK := contracts.AttachmentWork(
        flow="petty-cash",
        bill_key="BYJ1",
        form_id="ER_ExpReimbursement",
        kingdee_id=100001,
        number="BYJ1",
        app="main",
        process_instance_id="p1",
        file=contracts.FileRef(file_id="60605779562", file_name="发票.pdf", file_size=267266),
        url="http://127.0.0.1/_oss/t",
        url_expires_ms=1_764_000_000_000,
        issued_at=datetime(2026, 12, 3, tzinfo=UTC),
    ),
    contracts.AttachmentRefresh(work=_WORK, reason="expired"),
    contracts.AttachmentResult(
        flow="petty-cash",
        bill_key="BYJ1",
        number="BYJ1",
        process_instance_id="p1",
        file_id="60605779562",
        file_name="发票.pdf",
        outcome="attached",
        attachment_id=100501,
        bytes=267266,
        at=datetime(2026, 12, 3, tzinfo=UTC),
    ),
    contracts.WritebackMark(
        process_instance_id="p1",
        outcome="saved",
        state="done",
        text="已生成金蝶费用报销单 BYJ1",
        bill_key="BYJ1",
        at=datetime(2026, 12, 3, tzinfo=UTC),
    ),
]


class TestContractEncoding:
    @pytest.mark.parametrize("model", EVERY_CONTRACT, ids=lambda m: type(m).__name__)
    def test_bytes_are_pydantics(self, model: BaseModel) -> None:
        assert encode_model(model) == _pydantic(model)

    def test_every_contract_is_covered_and_has_plain_fields(self) -> None:
        """What encode_model's fast path relies on: no aliases, serializers or computed fields."""
        messages = {
            cls
            for _, cls in inspect.getmembers(contracts, inspect.isclass)
            if issubclass(cls, contracts._Message) and cls is not contracts._Message
        }
        assert messages <= {type(m) for m in EVERY_CONTRACT}
        for _, cls in inspect.getmembers(contracts, inspect.isclass):
            if not issubclass(cls, BaseModel) or cls is BaseModel:
                continue
            decorators = cls.__pydantic_decorators__
            assert not decorators.field_serializers and not decorators.model_serializers
            assert not decorators.computed_fields
            assert all(f.alias is None and not f.exclude for f in cls.model_fields.values())

    def test_values_orjson_does_not_know_fall_back_to_pydantic(self) -> None:
        snap = snapshot().model_copy(update={"instance": {"amount": Decimal("1.10"), "b": b"x"}})
        assert encode_model(snap) == _pydantic(snap)
        assert b'"amount":"1.10"' in encode_model(snap)

    def test_a_decimal_is_a_json_number_with_its_exact_digits(self) -> None:
        """Where pydantic writes a string, and orjson alone cannot write a Decimal at all."""
        amounts = ["99999999999999999999.99", "12345678901234567.89", "-0.10", "0.0000001000"]
        model = {"A": [Decimal(a) for a in amounts], "B": Decimal("1E+3"), "R": 1.0}
        bill = EVERY_CONTRACT[1].model_copy(update={"model": model})
        data = encode_model(bill)
        assert f'"A":[{",".join(amounts)}],"B":1000,"R":1.0'.encode() in data
        assert dumps(model) == data[data.index(b'{"A"') : data.index(b',"source"')]

    @pytest.mark.parametrize("bad", [Decimal("NaN"), Decimal("Infinity"), Decimal("-sNaN")])
    def test_a_decimal_that_is_no_number_is_refused(self, bad: Decimal) -> None:
        with pytest.raises(TypeError):
            dumps({"A": bad})


class TestDecode:
    def test_round_trip_keeps_chinese_text(self) -> None:
        data = encode_model(snapshot())
        assert "张三".encode() in data
        assert decode_model(data, ApprovalSnapshot, supported_versions=V1) == snapshot()

    def test_a_bill_is_read_back_with_exact_amounts(self) -> None:
        model = {"A": Decimal("12345678901234567.89"), "E": [{"B": Decimal("0.10")}], "I": 7}
        bill = EVERY_CONTRACT[1].model_copy(update={"model": model})
        back = decode_model(encode_model(bill), contracts.BillReady, supported_versions=V1)
        assert back.model == model
        assert repr(back.model["E"][0]["B"]) == "Decimal('0.10')"
        assert type(back.model["I"]) is int
        assert loads(encode_model(bill))["model"]["A"] == 1.2345678901234568e16  # orjson's

    def test_other_messages_keep_orjsons_floats(self) -> None:
        snap = snapshot().model_copy(update={"instance": {"f": 1204.5}})
        back = decode_model(encode_model(snap), ApprovalSnapshot, supported_versions=V1)
        assert type(back.instance["f"]) is float

    @pytest.mark.parametrize(
        "data",
        [b'{"schema_version": 1, "x": NaN}', b'{"schema_version": 1, "x": Infinity}', b"\xff"],
    )
    def test_a_bill_that_is_not_json_is_poison(self, data: bytes) -> None:
        with pytest.raises(PoisonMessageError) as info:
            decode_model(data, contracts.BillReady, supported_versions=V1)
        assert info.value.error_type == "undecodable"

    def test_a_bill_nested_too_deep_is_poison(self) -> None:
        data = b'{"schema_version": 1, "model": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        with pytest.raises(PoisonMessageError) as info:
            decode_model(data, contracts.BillReady, supported_versions=V1)
        assert info.value.error_type == "undecodable"

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
