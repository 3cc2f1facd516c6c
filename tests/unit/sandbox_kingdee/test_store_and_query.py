"""Sandbox internals: envelope normalisation, the FilterString parser, base-data seeding."""

from __future__ import annotations

import json
import random

import pytest

from dingdee_sandbox.demo_org import DEPARTMENTS, EMPLOYEES, EXPENSE_TYPES
from dingdee_sandbox.kingdee.demo import expense_model
from dingdee_sandbox.kingdee.envelope import EnvelopeError, as_bool, parse_envelope
from dingdee_sandbox.kingdee.forms import FORMS
from dingdee_sandbox.kingdee.query import QueryError, run_query
from dingdee_sandbox.kingdee.store import SaveOptions, Store


class TestEnvelope:
    def test_positional_string_and_named_agree(self) -> None:
        named = parse_envelope("batchsave", b'{"FORMID": "F", "data": "{\\"Model\\": []}"}')
        legacy = parse_envelope(
            "batchsave", json.dumps({"parameters": json.dumps(["F", '{"Model": []}'])}).encode()
        )
        assert named == legacy == {"formid": "F", "data": {"Model": []}}
        login = parse_envelope("validateuser", b'{"parameters": ["a", "u", "p", 2052]}')
        assert login == {"acctid": "a", "username": "u", "password": "p", "lcid": 2052}

    def test_bad_bodies_raise(self) -> None:
        with pytest.raises(EnvelopeError):
            parse_envelope("save", b"[1, 2]")
        with pytest.raises(EnvelopeError):
            parse_envelope("save", b'{"parameters": "{oops"}')

    @pytest.mark.parametrize(("raw", "expected"), [("true", True), ("False", False), (1, True)])
    def test_booleans_as_strings(self, raw: object, expected: bool) -> None:
        assert as_bool(raw, default=not expected) is expected


@pytest.fixture(scope="module")
def store() -> Store:
    s = Store()
    rng = random.Random(1)
    models = [expense_model(f"N{i}", rng) for i in range(6)]
    s.save(FORMS["ER_EXPREIMBURSEMENT"], models, SaveOptions(verify_base_data=True))
    return s


class TestQuery:
    @pytest.mark.parametrize(
        ("filter_string", "expected"),
        [
            ("FBillNo = 'N1'", ["N1"]),
            ("FBillNo <> 'N1' and FBillNo in ('N1','N2','N3')", ["N2", "N3"]),
            ("(FBillNo = 'N0' or FBillNo='N5') and FDocumentStatus = 'A'", ["N0", "N5"]),
            ("FBillNo not in ('N0','N1','N2','N3')", ["N4", "N5"]),
            ("FBillNo = 'it''s'", []),
        ],
    )
    def test_filter_subset(self, store: Store, filter_string: str, expected: list[str]) -> None:
        data = {
            "FormId": "ER_ExpReimbursement",
            "FieldKeys": "FBillNo",
            "FilterString": filter_string,
        }
        assert [row[0] for row in run_query(store, data, as_objects=False)] == expected

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            ({"FormId": "NOPE", "FieldKeys": "FID"}, "业务对象不存在"),
            ({"FormId": "ER_ExpReimbursement", "FieldKeys": "FX"}, "元数据中标识为FX的字段不存在"),
            (
                {"FormId": "ER_ExpReimbursement", "FieldKeys": "FID", "FilterString": "FID = "},
                "语法",
            ),
        ],
    )
    def test_errors(self, store: Store, data: dict[str, str], message: str) -> None:
        with pytest.raises(QueryError, match=message):
            run_query(store, data, as_objects=False)

    def test_reference_without_suffix_is_the_internal_id(self, store: Store) -> None:
        data = {"FormId": "BD_Department", "FieldKeys": "FNumber,FParentID,FParentID.FNumber"}
        rows = run_query(store, {**data, "FilterString": "FNumber='BM000002'"}, as_objects=True)
        parent = store.find("BD_Department", "BM000001")
        assert parent is not None
        assert rows == [
            {"FNumber": "BM000002", "FParentID": parent.id, "FParentID.FNumber": "BM000001"}
        ]


def test_seed_matches_the_demo_organisation() -> None:
    base = Store().base
    assert set(base.kinds["staff"]) == {e.staff_number for e in EMPLOYEES}
    assert set(base.kinds["expense_items"]) == set(EXPENSE_TYPES.values())
    assert {d.kingdee_number for d in DEPARTMENTS} <= set(base.kinds["departments"])
    for kind, number in [
        ("orgs", "100"),
        ("currencies", "PRE001"),
        ("bill_types", "FYBXD001_SYS"),
        ("rate_types", "HLTX01_SYS"),
        ("settle_types", "JSFS01_SYS"),
        ("settle_types", "JSFS04_SYS"),
        ("dept_groups", "BMFZ01"),
        *(("dept_properties", p) for p in ("DP01_SYS", "DP02_SYS", "DP03_SYS", "DP05_SYS")),
    ]:
        assert base.find(kind, number) is not None, (kind, number)
