"""The mapping engine: one approval snapshot → one Kingdee bill, or a skip, or field-level errors.

Pure functions: no I/O, no clocks except ``BillReady.mapped_at``. The batch loop only calls
:func:`map_snapshot`; ``dingdee mapping preview`` calls the same function.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from dingdee_common.contracts.v1 import ApprovalSnapshot, BillReady, SourceRef
from dingdee_common.errors import PermanentError
from dingdee_common.followups import files_in_form
from dingdee_transformer.encodings import Form, parse_form
from dingdee_transformer.flowspec import CompiledFlow
from dingdee_transformer.rules import Context, FieldError

__all__ = [
    "LINKED_ACTIONS",
    "LinkedChangeError",
    "MappingError",
    "Original",
    "Skip",
    "map_snapshot",
]

LINKED_ACTIONS = frozenset({"MODIFY", "REVOKE"})
_MAX_ERRORS_IN_MESSAGE = 20


@dataclass(frozen=True, slots=True)
class Skip:
    """The snapshot makes no bill (yet): still running, refused, terminated, or configured so."""

    flow: str
    process_instance_id: str
    reason: str


def _summary(errors: list[FieldError]) -> str:
    """Errors as one line; the same problem hitting several targets is said once."""
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for err in errors:
        grouped.setdefault((err.label, err.problem, err.rule), []).append(err.target)
    parts = [
        f"{label} {problem} [{', '.join(targets)}: {rule}]"
        for (label, problem, rule), targets in grouped.items()
    ]
    shown = "; ".join(parts[:_MAX_ERRORS_IN_MESSAGE])
    if len(parts) > _MAX_ERRORS_IN_MESSAGE:
        shown += f"; … and {len(parts) - _MAX_ERRORS_IN_MESSAGE} more"
    return shown


class MappingError(PermanentError):
    """The approval cannot become a valid bill; ``errors`` lists every field-level problem."""

    def __init__(self, flow: str, business_id: str, errors: list[FieldError]) -> None:
        super().__init__(
            f"flow {flow!r} approval {business_id}: {_summary(errors)}",
            field=errors[0].target if errors else None,
            code="mapping_invalid",
        )
        self.flow = flow
        self.business_id = business_id
        self.errors = errors


class LinkedChangeError(PermanentError):
    """A MODIFY/REVOKE instance of an already approved approval: a finance decision is needed."""


_OWN_ATTRS = frozenset(
    {"flow", "process_code", "process_instance_id", "status", "result", "biz_action"}
)


class _Attributes(Mapping[str, Any]):
    """What ``attr`` rules and templates read: the snapshot's own fields over its instance's.

    Read in place (a rule reads a handful of them), not copied per approval.
    """

    __slots__ = ("_snapshot",)

    def __init__(self, snapshot: ApprovalSnapshot) -> None:
        self._snapshot = snapshot

    def get(self, name: str, default: Any = None) -> Any:
        snapshot = self._snapshot
        if name in _OWN_ATTRS:
            return getattr(snapshot, name)
        if name == "fetched_at":
            return snapshot.fetched_at.isoformat()
        if name == "business_id" and snapshot.business_id:
            return snapshot.business_id
        return snapshot.instance.get(name, default)

    def __getitem__(self, name: str) -> Any:
        missing = object()
        value = self.get(name, missing)
        if value is missing:
            raise KeyError(name)
        return value

    def _keys(self) -> dict[str, None]:
        own = [*_OWN_ATTRS, "fetched_at", *(["business_id"] if self._snapshot.business_id else [])]
        return dict.fromkeys([*self._snapshot.instance, *own])

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())


def _business_id(snapshot: ApprovalSnapshot) -> str:
    value = snapshot.business_id or snapshot.instance.get("business_id")
    return str(value) if value else f"(no business_id; instance {snapshot.process_instance_id})"


def _qualifies(flow: CompiledFlow, snapshot: ApprovalSnapshot) -> str | None:
    q = flow.mapping.qualify
    if snapshot.status not in q.status:
        return f"status {snapshot.status} is not one of {q.status}"
    if (snapshot.result or "") not in q.result:
        return f"result {snapshot.result or '(none)'} is not one of {q.result}"
    return None


class Original(Protocol):
    """What the transformer remembers of an approval it made a bill of (its ``seen`` entry)."""

    @property
    def bill_key(self) -> str: ...

    @property
    def business_id(self) -> str | None: ...


def _linked_change(
    flow: CompiledFlow,
    snapshot: ApprovalSnapshot,
    original_of: Callable[[str], Original | None] | None,
) -> Skip | None:
    action = flow.mapping.on_linked_change
    if action == "map":
        return None
    if action == "skip":
        return Skip(flow.id, snapshot.process_instance_id, f"biz_action {snapshot.biz_action}")
    original = str(snapshot.instance.get("main_process_instance_id") or "(not given)")
    known = original_of(original) if original_of and original != "(not given)" else None
    field = flow.target.number_field
    if known is not None:
        was = f"审批编号 {known.business_id or '(none)'} (instance {original})"
        bill = f"its Kingdee bill {field} {known.bill_key}"
    else:
        was = f"instance {original} (审批编号 unknown to the transformer)"
        bill = f"its Kingdee bill ({field} unknown to the transformer)"
    verb = "modified" if snapshot.biz_action == "MODIFY" else "revoked"
    raise LinkedChangeError(
        f"flow {flow.id!r} approval 审批编号 {_business_id(snapshot)} (instance "
        f"{snapshot.process_instance_id}) {verb} the already approved approval {was}; {bill} "
        "stays as it is in Kingdee and no second bill is made: a finance decision is needed "
        "(adjust or reverse the bill by hand, then discard this dead letter)",
        field="biz_action",
        code=f"linked_{snapshot.biz_action.lower()}",
    )


def _bill_key(flow: CompiledFlow, ctx: Context, errors: list[FieldError]) -> str:
    key, problem = flow.render_bill_key(ctx)
    if problem or not key.strip():
        errors.append(FieldError("bill_key", "bill key", problem or "is empty", "template"))
        return ""
    return key.strip()


def _build_model(
    flow: CompiledFlow, ctx: Context, bill_key: str
) -> tuple[dict[str, Any], list[FieldError]]:
    errors: list[FieldError] = []
    model = flow.build_model(ctx, errors)
    if not errors:  # cross-field checks (totals) only mean something on a complete Model
        for check in flow.checks:
            check(ctx, model, errors)
    if flow.number_slot is not None:  # the builder kept the number's place: fill it, or drop it
        if bill_key:
            model[flow.number_slot] = bill_key
        else:
            del model[flow.number_slot]
        return model, errors
    number_field = flow.target.number_field
    given = model.get(number_field)
    if bill_key and given is not None and given != bill_key:
        problem = f"{given!r} differs from the bill key {bill_key!r}"
        errors.append(FieldError(number_field, number_field, problem, "bill_key"))
    return model, errors


def map_snapshot(
    flow: CompiledFlow,
    snapshot: ApprovalSnapshot,
    *,
    original_of: Callable[[str], Original | None] | None = None,
) -> BillReady | Skip:
    """Map one approval snapshot of ``flow``.

    Args:
        flow: the compiled flow the snapshot belongs to.
        snapshot: the approval as the extractor fetched it.
        original_of: optional lookup of what was emitted for an earlier instance id (its bill
            key and 审批编号), used to name the original bill in a MODIFY/REVOKE dead letter.

    Returns:
        The bill to save, or a :class:`Skip` when the approval does not qualify.

    Raises:
        MappingError: one or more fields break their rules; the message names flow, approval,
            field and rule.
        LinkedChangeError: a MODIFY/REVOKE instance and the flow says dead-letter (the default).
    """
    not_qualified = _qualifies(flow, snapshot)
    if not_qualified:
        return Skip(flow.id, snapshot.process_instance_id, not_qualified)
    if snapshot.biz_action in LINKED_ACTIONS:
        skip = _linked_change(flow, snapshot, original_of)
        if skip is not None:
            return skip
    form: Form = parse_form(snapshot.instance.get("form_component_values"), flow.form_names)
    ctx = Context(form=form, attrs=_Attributes(snapshot), tables=flow.tables, tz=flow.tz)
    errors: list[FieldError] = []
    bill_key = _bill_key(flow, ctx, errors)
    model, field_errors = _build_model(flow, ctx, bill_key)
    errors += field_errors
    if errors:
        raise MappingError(flow.id, _business_id(snapshot), errors)
    return BillReady(
        flow=flow.id,
        bill_key=bill_key,
        form_id=flow.target.form_id,
        number_field=flow.target.number_field,
        save_options=dict(flow.target.save_options),
        model=model,
        source=_source(flow, snapshot),
    )


def _source(flow: CompiledFlow, snapshot: ApprovalSnapshot) -> SourceRef:
    """Where the bill came from; with follow-ups (issue #18), the originator and the files."""
    if flow.followup_components is None:
        return SourceRef(
            process_instance_id=snapshot.process_instance_id,
            business_id=snapshot.business_id,
            fingerprint=snapshot.fingerprint,
        )
    instance = snapshot.instance
    files = files_in_form(instance.get("form_component_values"), list(flow.followup_components))
    userid = instance.get("originator_userid")
    return SourceRef(
        process_instance_id=snapshot.process_instance_id,
        business_id=snapshot.business_id,
        fingerprint=snapshot.fingerprint,
        originator_userid=str(userid) if userid else None,
        files=files,
    )
