"""The business operations of the sandbox: logins, Save/BatchSave, queries, View (contract §1–§5).

Each function takes normalised parameters (see ``envelope``) and returns the JSON payload Kingdee
would answer; transport concerns (auth headers, faults, latency) live in ``app``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from dingdee_common.kingdee_signing import login_sign
from dingdee_sandbox.kingdee.envelope import as_bool, as_int, ci_get
from dingdee_sandbox.kingdee.forms import FORMS, EntrySpec, FieldSpec
from dingdee_sandbox.kingdee.query import QueryError, run_query
from dingdee_sandbox.kingdee.responses import (
    failure_envelope,
    login_result,
    status_failure,
    status_success,
)
from dingdee_sandbox.kingdee.state import SandboxState, Session
from dingdee_sandbox.kingdee.store import SaveOptions

__all__ = [
    "async_started",
    "do_async_result",
    "do_business_info",
    "do_login",
    "do_query",
    "do_save",
    "do_view",
    "package_count",
]

LOGIN_METHODS = ("validateuser", "loginbyappsecret", "loginbysign")


def _login_ok(method: str, params: dict[str, Any], state: SandboxState) -> bool:
    c = state.config
    if method == "validateuser":
        return str(params.get("password", "")) == c.password
    if method == "loginbyappsecret":
        return params.get("appid") == c.app_id and params.get("appsecret") == c.app_secret
    timestamp = str(params.get("timestamp", ""))
    expected = login_sign(c.acct_id, c.username, c.app_id, c.app_secret, timestamp)
    return params.get("appid") == c.app_id and str(params.get("sign", "")).lower() == expected


def do_login(
    method: str, params: dict[str, Any], state: SandboxState
) -> tuple[dict[str, Any], Session | None]:
    """ValidateUser / LoginByAppSecret / LoginBySign → (LoginResult, the new session or None)."""
    c = state.config
    acct = str(params.get("acctid", ""))
    user = str(params.get("username", ""))
    if acct != c.acct_id:
        state.stats["login_failed"] += 1
        return login_result(-1, f"数据中心无法获取到：{acct}"), None
    locked = c.login_lockout_after and state.failed_logins[user] >= c.login_lockout_after
    if locked or user in c.locked_users:
        state.stats["login_failed"] += 1
        return login_result(-1, f"用户{user}已被锁定，请联系系统管理员"), None
    if user != c.username or not _login_ok(method, params, state):
        state.stats["login_failed"] += 1
        state.failed_logins[user] += 1
        return login_result(0, "用户名或密码错误！"), None
    state.failed_logins.pop(user, None)
    session = state.new_session(acct, user, as_int(params.get("lcid"), 2052))
    return login_result(1, None, session_id=session.id, user=user, acct_id=acct), session


def _models(params: dict[str, Any], batch: bool) -> tuple[list[Any], dict[str, Any]]:
    data = params.get("data")
    if not isinstance(data, dict):
        return [], {}
    model = ci_get(data, "Model")
    if batch:
        return (model if isinstance(model, list) else [model] if model else []), data
    return ([model] if model is not None else []), data


def package_count(params: dict[str, Any], batch: bool) -> tuple[int, int, int]:
    """(packages, entry rows, BatchCount) of a write, for the latency model."""
    models, data = _models(params, batch)
    rows = 0
    for model in models:
        if isinstance(model, dict):
            rows += sum(len(v) for v in model.values() if isinstance(v, list))
    return len(models), rows, max(as_int(ci_get(data, "BatchCount"), 1), 1)


def bill_numbers(params: dict[str, Any], batch: bool) -> list[str]:
    """The ``FBillNo`` / ``FNumber`` of each package of a write."""
    models, _ = _models(params, batch)
    return [str(m.get("FBillNo") or m.get("FNumber") or "") for m in models if isinstance(m, dict)]


def _options(data: dict[str, Any], state: SandboxState) -> SaveOptions:
    need = ci_get(data, "NeedReturnFields") or []
    return SaveOptions(
        verify_base_data=as_bool(ci_get(data, "IsVerifyBaseDataField"), False),
        validate=as_bool(ci_get(data, "ValidateFlag"), True),
        auto_audit=as_bool(ci_get(data, "IsAutoSubmitAndAudit"), False),
        need_return_fields=tuple(str(k) for k in need) if isinstance(need, list) else (),
        need_update_fields=tuple(str(k) for k in ci_get(data, "NeedUpDateFields") or []),
        all_or_nothing=state.config.all_or_nothing,
    )


def do_save(
    params: dict[str, Any], state: SandboxState, *, batch: bool, keep: int | None = None
) -> dict[str, Any]:
    """Save / BatchSave; ``keep`` commits only the first packages (the commit-then-drop fault)."""
    form_id = str(params.get("formid") or "")
    spec = FORMS.get(form_id.upper())
    if not form_id:
        return failure_envelope("表单Id（FormId）不能为空", 5)
    if spec is None:
        return failure_envelope(f"业务对象{form_id}不存在", 9)
    models, data = _models(params, batch)
    if not models:
        return failure_envelope("Model 不能为空", 8)
    if keep is not None:
        models = models[:keep]
    refused = _row_msgcode(models, state)
    if refused is not None:
        return refused
    outcome = state.store.save(spec, models, _options(data, state))
    state.stats["packages_saved"] += len(outcome.successes)
    state.stats["packages_rejected"] += len({e["DIndex"] for e in outcome.errors})
    status = (
        status_failure(outcome.errors, 11, outcome.successes)
        if outcome.errors
        else status_success(outcome.successes)
    )
    result: dict[str, Any] = {"ResponseStatus": status}
    if not batch:
        first = outcome.successes[0] if outcome.successes else None
        result["Id"] = first["Id"] if first else ""
        result["Number"] = first["Number"] if first else ""
    result["NeedReturnData"] = outcome.return_data or [{}]
    return {"Result": result}


# kingdee.md §3.3, for the message of a package refused by ``row_msgcode_numbers``
MSGCODE_MEANING = {
    2: "没有权限",
    4: "异常",
    6: "数据库操作失败",
    7: "许可错误",
    8: "参数错误",
    9: "指定的字段或值不存在",
    10: "数据不存在",
    11: "校验未通过",
    12: "不可操作",
    13: "网控冲突",
    14: "调用限制",
    15: "不允许管理员登录",
}


def _row_msgcode(models: list[Any], state: SandboxState) -> dict[str, Any] | None:
    """A write carrying a number of ``row_msgcode_numbers``: refused whole, naming its package."""
    codes = state.config.row_msgcode_numbers
    errors, code = [], 0
    for dindex, model in enumerate(models):
        fields = model if isinstance(model, dict) else {}
        number = str(fields.get("FBillNo") or fields.get("FNumber") or "")
        if number and number in codes:
            code = codes[number]
            meaning = MSGCODE_MEANING.get(code, f"MsgCode {code}")
            message = f"单据编号为“{number}”的单据：{meaning}"
            errors.append({"FieldName": "FBillNo", "Message": message, "DIndex": dindex})
    if not errors:
        return None
    state.stats["packages_rejected"] += len(errors)
    return {"Result": {"ResponseStatus": status_failure(errors, code), "NeedReturnData": [{}]}}


def do_query(params: dict[str, Any], state: SandboxState, *, as_objects: bool) -> Any:
    """ExecuteBillQuery (arrays; errors wrapped ``[[..]]``) or BillQuery (objects; plain error)."""
    try:
        return run_query(state.store, params.get("data"), as_objects=as_objects)
    except QueryError as exc:
        envelope = failure_envelope(str(exc), 9)
        return envelope if as_objects else [[envelope]]


def _view_ref(value: Any, fspec: FieldSpec | None, state: SandboxState) -> dict[str, Any]:
    """A reference as View expands it (§5.1): the internal id, number and multi-language name."""
    kind = fspec.ref if fspec and fspec.ref != "contact" else None
    item = state.store.ref_item(kind, value)
    number = item.number if item else state.store.ref_number(value)
    name = item.name if item else number
    return {"Id": item.id if item else 0, "Number": number, "Name": [{"Key": 2052, "Value": name}]}


def _view_object(
    model: dict[str, Any],
    fields: Mapping[str, FieldSpec],
    state: SandboxState,
    entries: Mapping[str, EntrySpec] | None = None,
) -> dict[str, Any]:
    """F-less property names; a reference ``Xxx`` also gets ``Xxx_Id`` (§5.1, §8.4 item 19)."""
    by_key = {k.upper(): v for k, v in fields.items()}
    rows_of = {k.upper(): e.fields for k, e in (entries or {}).items()}
    out: dict[str, Any] = {}
    for key, value in model.items():
        name = key[1:] if key[:1] in ("F", "f") else key
        fspec = by_key.get(key.upper())
        if isinstance(value, dict):
            ref = _view_ref(value, fspec, state)
            out[f"{name}_Id"], out[name] = ref["Id"], ref
        elif isinstance(value, list):
            row_fields = rows_of.get(key.upper(), {})
            out[name] = [
                _view_object(v, row_fields, state) if isinstance(v, dict) else v for v in value
            ]
        else:
            out[name] = value
    return out


def do_view(params: dict[str, Any], session: Session | None, state: SandboxState) -> Any:
    """View by ``Number`` or ``Id``: F-less property names, refs expanded (§5.1)."""
    spec = FORMS.get(str(params.get("formid") or "").upper())
    raw = params.get("data")
    data: dict[str, Any] = raw if isinstance(raw, dict) else {}
    if spec is None:
        return failure_envelope("业务对象不存在", 9)
    number, record_id = ci_get(data, "Number"), as_int(ci_get(data, "Id"), 0)
    record = (
        state.store.find_id(spec.form_id, record_id)
        if record_id
        else state.store.find(spec.form_id, str(number or ""))
    )
    if record is None:
        return failure_envelope("数据不存在或已被删除", 10)
    header = {k: v for k, v in record.model.items() if k.upper() != spec.pk}
    body = _view_object(header, spec.fields, state, spec.entries)
    body.update({"Id": record.id, "Number": record.number, "DocumentStatus": record.status})
    if spec.number_field == "FBillNo":
        body["BillNo"] = record.number
    for entry_key, entry in spec.entries.items():
        body[entry.entity] = body.pop(entry_key[1:], [])
    return {"Result": {"ResponseStatus": None, "Result": body}}


def async_started(task_id: str) -> dict[str, Any]:
    """The first answer of an async BatchSave (``beginmethod``, §2.5): a running task."""
    return {
        "Status": 1,
        "TaskId": task_id,
        "Result": None,
        "Cancelled": False,
        "IsFaulted": False,
        "Successful": False,
        "Message": None,
        "Progress": 0,
        "ProgressDesc": None,
    }


def do_async_result(params: dict[str, Any], state: SandboxState) -> dict[str, Any]:
    """``QueryAsyncResult``: the finished task's normal BatchSave answer under ``Result``."""
    info = params.get("queryinfo")
    if isinstance(info, str):
        try:
            info = orjson.loads(info)
        except orjson.JSONDecodeError:
            info = None
    task_id = str(ci_get(info, "TaskId") or "") if isinstance(info, dict) else ""
    result = state.async_results.pop(task_id, None)
    if result is None:
        return failure_envelope(f"异步任务不存在：{task_id}", 10)
    done = async_started(task_id)
    done.update({"Status": 2, "Result": result, "Successful": True, "Progress": 100})
    return done


def do_business_info(params: dict[str, Any]) -> dict[str, Any]:
    """QueryBusinessInfo (kingdee.md §10.3): ``{"data": {"FormId": …}}`` → the form's metadata.

    Only the outer shape is documented (``{"Result": {"ResponseStatus": "", "NeedReturnData":
    …}}``); what ``NeedReturnData`` holds is not confirmed. The sandbox answers entities holding
    fields with ``Key``, ``Caption``, ``MustInput`` and ``IsViewVisible`` (the attributes a 3P
    client reads, §10.3) — a guess in that shape, so clients must walk it defensively (§10.5
    item 3). An unknown FormId answers ``业务对象不存在`` as ExecuteBillQuery does (§4.2).
    """
    data = params.get("data")
    form_id = str(ci_get(data, "FormId") or "") if isinstance(data, dict) else ""
    spec = FORMS.get(form_id.upper())
    if spec is None:
        return failure_envelope("业务对象不存在", 9)

    def fields(specs: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {"Key": k, "Caption": f.caption, "MustInput": int(f.required), "IsViewVisible": True}
            for k, f in specs.items()
        ]

    entities = [{"Key": "FBillHead", "Fields": fields(spec.fields)}]
    entities += [
        {"Key": key, "Caption": entry.caption, "Fields": fields(entry.fields)}
        for key, entry in spec.entries.items()
    ]
    info = {"FormId": spec.form_id, "Caption": spec.caption, "Entities": entities}
    return {"Result": {"ResponseStatus": "", "NeedReturnData": info}}
