"""Property tests: random, mangled or truncated approvals never crash the mapper.

Every input either maps to a bill, is skipped, or fails with field-level errors; and the record
processor turns any bytes at all into an outcome instead of raising.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from dingdee_common.codec import encode_model
from dingdee_common.contracts.v1 import BillReady
from dingdee_common.kafka.dlq import SourceRecord
from dingdee_transformer.convert import KINGDEE_DATETIME, ConversionError, converter, to_decimal
from dingdee_transformer.flowspec import load_compiled
from dingdee_transformer.mapping import LinkedChangeError, MappingError, Skip, map_snapshot
from dingdee_transformer.metrics import TransformerMetrics
from dingdee_transformer.pipeline import DeadLetter, Emit, Processor, Skipped
from tests.helpers import demo_flows_file
from tests.unit.transformer.samples import petty_form, snapshot

ROOT = Path(__file__).resolve().parents[3]
FLOWS = load_compiled(demo_flows_file())
PROCESSOR = Processor(
    FLOWS,
    TransformerMetrics.create(CollectorRegistry()),
    source_topic="approvals.raw",
    bills_topic="bills.ready",
    group="g",
)
LABELS = [
    "补单事由",
    "费用类型",
    "支付方式",
    "费用明细",
    "部门编码",
    "上级部门",
    "部门属性",
    "生效日期",
]
TYPES = [
    "TextField",
    "DDSelectField",
    "MoneyField",
    "TableField",
    "DDDateField",
    "InnerContactField",
]

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
form_values = st.one_of(
    json_values,
    st.sampled_from(["null", "", "1,234.50", "¥12", "12,3a", "2026-11-03", "办公用品", "[", "[]"]),
    json_values.map(lambda v: json.dumps(v, ensure_ascii=False)),
)
components = st.fixed_dictionaries(
    {
        "component_type": st.sampled_from(TYPES) | st.text(max_size=5),
        "id": st.text(max_size=6),
        "name": st.sampled_from(LABELS) | st.text(max_size=4) | json_values,
        "value": form_values,
    },
    optional={"ext_value": form_values},
)


def _assert_maps_or_field_errors(flow_id: str, instance_form: Any, **kw: Any) -> None:
    snap = snapshot(flow_id, form=[], **kw)
    instance = {**snap.instance, "form_component_values": instance_form}
    snap = snap.model_copy(update={"instance": instance})
    try:
        result = map_snapshot(FLOWS[flow_id], snap)
    except MappingError as exc:
        assert exc.errors, "a mapping error always lists its field errors"
        assert all(e.target and e.problem for e in exc.errors)
    except LinkedChangeError:
        pass
    else:
        assert isinstance(result, (BillReady, Skip))


@settings(
    max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    flow_id=st.sampled_from(sorted(FLOWS)),
    form=st.lists(components, max_size=8) | json_values,
    userid=st.text(max_size=20),
    biz_action=st.sampled_from(["NONE", "MODIFY", "REVOKE", "???"]),
)
def test_random_forms_map_or_fail_per_field(
    flow_id: str, form: Any, userid: str, biz_action: str
) -> None:
    _assert_maps_or_field_errors(flow_id, form, userid=userid, biz_action=biz_action)


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(min_value=0, max_value=2000), field_index=st.integers(0, 8))
def test_truncated_form_values_map_or_fail_per_field(cut: int, field_index: int) -> None:
    form = petty_form()
    index = field_index % len(form)
    value = form[index]["value"]
    form[index] = {**form[index], "value": value[: cut % (len(value) + 1)]}
    _assert_maps_or_field_errors("petty-cash", form)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_processor_turns_any_bytes_into_an_outcome(data: bytes) -> None:
    record = SourceRecord("approvals.raw", 0, 1, b"k", data)
    outcome = PROCESSOR.process(record, lambda _pid: None)
    assert isinstance(outcome, DeadLetter)
    assert outcome.verdict.error_class is not None


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(min_value=0, max_value=4000))
def test_processor_on_truncated_snapshots(cut: int) -> None:
    raw = encode_model(snapshot())
    record = SourceRecord("approvals.raw", 0, 1, b"k", raw[:cut])
    outcome = PROCESSOR.process(record, lambda _pid: None)
    if cut >= len(raw):
        assert isinstance(outcome, Emit)
    else:
        assert isinstance(outcome, (DeadLetter, Skipped))


_NUMBER_TEXT = st.from_regex(r"\A[+-]?(\d{1,14}(\.\d{0,5})?|\.\d{1,5})\n?\Z")


@settings(max_examples=400, deadline=None)
@given(
    text=st.one_of(_NUMBER_TEXT, st.text(max_size=12)),
    precision=st.integers(0, 4),
    money=st.booleans(),
)
def test_number_conversion_agrees_with_its_decimal(text: str, precision: int, money: bool) -> None:
    """The converter's shortcut for plain numbers gives the decimal rounding gives, to the
    exponent (so ``1234.5`` at 2 places is ``Decimal('1234.50')`` either way)."""
    tz = ZoneInfo("Asia/Shanghai")
    convert = converter("money" if money else "decimal", precision=precision)
    try:
        expected: Any = to_decimal(text, precision=precision, money=money)
    except ConversionError as exc:
        expected = str(exc)
    try:
        got: Any = convert(text, tz)
    except ConversionError as exc:
        got = str(exc)
    assert repr(got) == repr(expected)


@settings(max_examples=200, deadline=None)
@given(moment=st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)))
def test_kingdee_dates_agree_with_strftime(moment: datetime) -> None:
    tz = ZoneInfo("Asia/Shanghai")
    text = moment.isoformat(" ")
    assert converter("datetime", precision=2)(text, tz) == moment.strftime(KINGDEE_DATETIME)
    day = datetime.combine(moment.date(), time())
    assert converter("date", precision=2)(text, tz) == day.strftime(KINGDEE_DATETIME)
