"""Submit, Audit, UnAudit and Delete of saved bills (contract §5.2–§5.4, §8.4 item 18).

Each call names its bills by ``Numbers`` (array) or ``Ids`` (comma-separated string) and is
answered per row (§3.5): numbers that do not exist are silently absent, a bill in the wrong
status is an ``Errors`` row (MsgCode 11, §5.4) and the others succeed with their ``DIndex``. When
no named bill exists at all the call fails with MsgCode 10 (§5.4 "all numbers missing").

Document statuses (``FDocumentStatus``): ``A`` 创建, ``B`` 审核中, ``C`` 已审核, ``D`` 重新审核.
Submit takes ``A``/``D`` to ``B``; Audit takes ``B`` to ``C``; UnAudit takes ``C`` to ``D``;
Delete removes an ``A``/``D`` bill (an audited or submitted one must be un-audited first).
"""

from __future__ import annotations

from typing import Any

from dingdee_sandbox.kingdee.envelope import ci_get
from dingdee_sandbox.kingdee.forms import FORMS, FormSpec
from dingdee_sandbox.kingdee.responses import failure_envelope, status_failure, status_success
from dingdee_sandbox.kingdee.state import SandboxState
from dingdee_sandbox.kingdee.store import Record

__all__ = ["OPERATIONS", "do_operation"]

_Refusals = dict[str, str]
_ALREADY_AUDITED = "单据已经审核！"  # §5.4 (real text, after "单据编号为“…”的{form}，")
# operation → (statuses it accepts, status it leaves (None: deleted), success text, refusals)
_RULES: dict[str, tuple[frozenset[str], str | None, str, _Refusals]] = {
    "submit": (
        frozenset("AD"),
        "B",
        "提交成功！",
        {"B": "单据已经提交，不能重复提交！", "C": _ALREADY_AUDITED},
    ),
    "audit": (
        frozenset("B"),
        "C",
        "审核成功！",
        {"A": "单据未提交，不能审核！", "D": "单据未提交，不能审核！", "C": _ALREADY_AUDITED},
    ),
    "unaudit": (
        frozenset("C"),
        "D",
        "反审核成功！",
        dict.fromkeys("ABD", "单据不是已审核状态，不能反审核！"),
    ),
    "delete": (
        frozenset("AD"),
        None,
        "删除成功！",
        {"B": "单据正在审核中，不允许删除！", "C": "单据已审核，不允许删除！"},
    ),
}
OPERATIONS = tuple(_RULES)


def _targets(spec: FormSpec, data: dict[str, Any], state: SandboxState) -> list[Record | None]:
    """The bills a call names, in the order given (``None`` for one that does not exist)."""
    numbers = ci_get(data, "Numbers") or []
    if isinstance(numbers, str):
        numbers = [n for n in numbers.split(",") if n.strip()]
    if numbers:
        return [state.store.find(spec.form_id, str(n).strip()) for n in numbers]
    ids = str(ci_get(data, "Ids") or "")
    parts = [p.strip() for p in ids.split(",")]
    return [state.store.find_id(spec.form_id, int(p)) if p.isdigit() else None for p in parts]


def do_operation(operation: str, params: dict[str, Any], state: SandboxState) -> dict[str, Any]:
    """One Submit / Audit / UnAudit / Delete call; ``operation`` is a key of :data:`OPERATIONS`."""
    form_id = str(params.get("formid") or "")
    if not form_id:
        return failure_envelope("表单Id（FormId）不能为空", 5)
    spec = FORMS.get(form_id.upper())
    if spec is None:
        return failure_envelope(f"业务对象{form_id}不存在", 9)
    raw = params.get("data")
    records = _targets(spec, raw if isinstance(raw, dict) else {}, state)
    if not any(records):
        return failure_envelope("数据不存在或已被删除", 10)
    accepts, after, done_text, refusals = _RULES[operation]
    successes: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for dindex, record in enumerate(records):
        if record is None:
            continue  # §5.4: missing numbers are silently absent
        prefix = f"单据编号为“{record.number}”的{spec.caption}，"
        if record.status not in accepts:
            refusal = refusals.get(record.status, "单据状态不允许此操作！")
            errors.append({"FieldName": None, "Message": prefix + refusal, "DIndex": dindex})
            continue
        if after is None:
            state.store.delete(record)
        else:
            record.status = after
        successes.append({"Id": record.id, "Number": record.number, "DIndex": dindex})
        messages.append({"FieldName": None, "Message": prefix + done_text, "DIndex": dindex})
    state.stats[f"bills_{operation}"] += len(successes)
    if errors:
        return {"Result": {"ResponseStatus": status_failure(errors, 11, successes)}}
    status = status_success(successes)
    status["SuccessMessages"] = messages
    return {"Result": {"ResponseStatus": status}}
