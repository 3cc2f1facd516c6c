"""The sandbox's in-memory Kingdee database: per-package validation and saving (contract §8.3).

Every ``save`` runs synchronously (no awaits), so a BatchSave is atomic with respect to other
requests, like one database transaction per package with a unique index on the number field.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dingdee_sandbox.kingdee.basedata import BaseData, BaseItem, seed_base_data, seed_departments
from dingdee_sandbox.kingdee.envelope import ci_get
from dingdee_sandbox.kingdee.forms import CONTACT_KINDS, FORMS, FieldSpec, FormSpec

__all__ = ["Record", "SaveOptions", "SaveOutcome", "Store", "duplicate_message"]

DUPLICATE = "违反字段唯一性要求：编码唯一。[{number}]在当前系统中已经被使用。"
_UNKNOWN_KEY = (
    "ResolveFiled_InnerEx解析字段(Key:{key})失败：实体不存在此属性！[EntityType：BillHead]"
)
_REF_KEYS = ("FNUMBER", "FSTAFFNUMBER", "FCODE")


def duplicate_message(number: str) -> str:
    """Kingdee's uniqueness message for ``number`` (contract §3.4)."""
    return DUPLICATE.format(number=number)


@dataclass
class Record:
    """One saved bill or base-data record."""

    id: int
    number: str
    form_id: str
    model: dict[str, Any]
    saved_at: str
    status: str = "A"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "number": self.number,
            "form_id": self.form_id,
            "status": self.status,
            "model": self.model,
            "saved_at": self.saved_at,
        }


@dataclass(frozen=True, slots=True)
class SaveOptions:
    """The ``data`` switches of §2.2 that change how packages are validated and saved."""

    verify_base_data: bool = False
    validate: bool = True
    auto_audit: bool = False
    need_return_fields: tuple[str, ...] = ()
    need_update_fields: tuple[str, ...] = ()
    all_or_nothing: bool = False


@dataclass
class SaveOutcome:
    successes: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    return_data: list[dict[str, Any]] = field(default_factory=list)


def _error(field_name: str | None, message: str, dindex: int) -> dict[str, Any]:
    return {"FieldName": field_name, "Message": message, "DIndex": dindex}


def _record_id(spec: FormSpec, model: Any) -> int:
    """The primary key of a package (0 = create); non-numeric values count as 0."""
    if not isinstance(model, dict):
        return 0
    value = ci_get(model, spec.pk)
    try:
        return int(str(value).strip() or "0") if value is not None else 0
    except ValueError:
        return 0


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


class Store:
    """Records per form (by number and by id) plus the base-data registry."""

    def __init__(self, base: BaseData | None = None) -> None:
        self.base = base or seed_base_data()
        self.records: dict[str, dict[str, Record]] = {}
        self.by_id: dict[str, dict[int, Record]] = {}
        self._ids = itertools.count(100001)
        self._auto_numbers = itertools.count(1)
        for number, name, parent in seed_departments():
            org = {"FNumber": "100"}
            model = {"FNumber": number, "FName": name, "FCreateOrgId": org, "FUseOrgId": org}
            if parent:
                model["FParentID"] = {"FNumber": parent}
            self._insert(FORMS["BD_DEPARTMENT"], number, model, "C")

    # ---- lookups -----------------------------------------------------------------------------

    def find(self, form_id: str, number: str) -> Record | None:
        return self.records.get(form_id.upper(), {}).get(number)

    def find_id(self, form_id: str, record_id: int) -> Record | None:
        return self.by_id.get(form_id.upper(), {}).get(record_id)

    def delete(self, record: Record) -> None:
        """Remove a bill (Delete, contract §8.4 item 18); its number becomes free again.

        A deleted base-data record (a department) can no longer be referenced.
        """
        self.records.get(record.form_id.upper(), {}).pop(record.number, None)
        self.by_id.get(record.form_id.upper(), {}).pop(record.id, None)
        kind = FORMS[record.form_id.upper()].base_kind
        if kind:
            self.base.kinds.get(kind, {}).pop(record.number, None)

    def ref_item(self, kind: str | None, value: Any) -> BaseItem | None:
        """The base-data item a reference names (of ``kind``, or of any kind when unknown)."""
        number = self.ref_number(value)
        if number is None:
            return None
        kinds = [kind] if kind else list(self.base.kinds)
        return next((i for k in kinds if (i := self.base.find(k, number))), None)

    def bills(self, form_id: str) -> list[Record]:
        return sorted(self.records.get(form_id.upper(), {}).values(), key=lambda r: r.id)

    # ---- references --------------------------------------------------------------------------

    def ref_number(self, value: Any) -> str | None:
        """The number a reference object names (``{"FNumber": ..}`` etc.), or None."""
        if isinstance(value, dict):
            for key in _REF_KEYS:
                found = ci_get(value, key)
                if not _blank(found):
                    return str(found).strip()
            return None
        return None if _blank(value) else str(value)

    def _ref_kind(self, spec: FieldSpec, model: dict[str, Any]) -> str | None:
        if spec.ref != "contact":
            return spec.ref
        unit_type = str(ci_get(model, "FCONTACTUNITTYPE") or "").upper()
        return CONTACT_KINDS.get(unit_type)

    def resolves(self, kind: str, value: Any) -> bool:
        if isinstance(value, int) and not isinstance(value, bool):
            return any(i.id == value for i in self.base.kinds.get(kind, {}).values())
        number = self.ref_number(value)
        return number is not None and self.base.find(kind, number) is not None

    # ---- validation --------------------------------------------------------------------------

    def _check_field(
        self, key: str, spec: FieldSpec, value: Any, model: dict[str, Any], opts: SaveOptions
    ) -> str | None:
        """The error text for one field, or None; ``{caption}`` placeholders are filled later."""
        kind = self._ref_kind(spec, model)
        present = not _blank(value) and not (kind and self.ref_number(value) is None)
        if present and kind and not self.resolves(kind, value):
            if opts.verify_base_data:
                return f"“{spec.caption}”字段的值“{self.ref_number(value)}”在系统中不存在或未审核"
            present = False
        if not present and spec.required and opts.validate:
            return "required"
        return None

    def _check_header(
        self, spec: FormSpec, model: dict[str, Any], opts: SaveOptions, dindex: int
    ) -> list[dict[str, Any]]:
        known = {k.upper(): k for k in [*spec.fields, *spec.entries]}
        errors: list[dict[str, Any]] = [
            _error(key, _UNKNOWN_KEY.format(key=key), dindex)
            for key in model
            if key.upper() not in known
        ]
        for key, fspec in spec.fields.items():
            problem = self._check_field(key, fspec, ci_get(model, key), model, opts)
            if problem == "required":
                errors.append(_error(key, f"字段“{fspec.caption}”是必填项", dindex))
            elif problem:
                errors.append(_error(key, problem, dindex))
        return errors

    def _check_entries(
        self, spec: FormSpec, model: dict[str, Any], opts: SaveOptions, dindex: int
    ) -> list[dict[str, Any]]:
        errors: list[dict[str, Any]] = []
        for entry_key, entry in spec.entries.items():
            rows = ci_get(model, entry_key) or []
            if not isinstance(rows, list):
                errors.append(_error(entry_key, f"单据体实体【{entry.caption}】格式错误", dindex))
                continue
            for n, row in enumerate(rows, start=1):
                where = f"单据体实体【{entry.caption}】第【{n}】行分录，"
                for key, fspec in entry.fields.items():
                    value = ci_get(row, key) if isinstance(row, dict) else None
                    problem = self._check_field(key, fspec, value, model, opts)
                    if problem == "required":
                        errors.append(_error(key, f"{where}【{fspec.caption}】字段必录", dindex))
                    elif problem:
                        errors.append(_error(key, f"{where}{problem}", dindex))
        return errors

    def _number_of(self, spec: FormSpec, model: dict[str, Any]) -> str:
        number = ci_get(model, spec.number_field)
        if _blank(number):
            stamp = datetime.now(UTC).strftime("%Y%m%d")
            return f"{spec.number_prefix}{stamp}{next(self._auto_numbers):06d}"
        return str(number).strip()

    # ---- saving ------------------------------------------------------------------------------

    def _insert(self, spec: FormSpec, number: str, model: dict[str, Any], status: str) -> Record:
        record = Record(
            id=next(self._ids),
            number=number,
            form_id=spec.form_id,
            model={**model, spec.number_field: number},
            saved_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
            status=status,
        )
        self.records.setdefault(spec.form_id.upper(), {})[number] = record
        self.by_id.setdefault(spec.form_id.upper(), {})[record.id] = record
        if spec.base_kind:
            self.base.add(spec.base_kind, number, str(ci_get(model, "FName") or number), record.id)
        return record

    def validate(
        self, spec: FormSpec, model: Any, opts: SaveOptions, dindex: int, taken: set[str]
    ) -> tuple[str, list[dict[str, Any]]]:
        """The number a package would get and every error it has (empty list = savable)."""
        if not isinstance(model, dict):
            return "", [_error(None, "数据包格式错误：Model 必须是对象", dindex)]
        number = self._number_of(spec, model)
        errors = self._check_header(spec, model, opts, dindex)
        errors += self._check_entries(spec, model, opts, dindex)
        if number in taken or self.find(spec.form_id, number) is not None:
            errors.insert(0, _error(spec.number_field, duplicate_message(number), dindex))
        return number, errors

    def save(self, spec: FormSpec, models: list[Any], opts: SaveOptions) -> SaveOutcome:
        """Validate and save package by package (a later one may reference an earlier one).

        Called by Save (one package) and BatchSave; ``DIndex`` is the package's index in
        ``models``. In all-or-nothing mode every package is validated first and none is saved
        when any fails.
        """
        outcome = SaveOutcome()
        taken: set[str] = set()
        valid: list[tuple[int, str, dict[str, Any]]] = []
        for dindex, model in enumerate(models):
            record_id = _record_id(spec, model)
            if record_id:
                self._update(spec, record_id, model, opts, dindex, outcome)
                continue
            number, errors = self.validate(spec, model, opts, dindex, taken)
            taken.add(number)
            outcome.errors.extend(errors)
            if errors:
                continue
            if opts.all_or_nothing:
                valid.append((dindex, number, model))
            else:
                self._commit(spec, dindex, number, model, opts, outcome)
        if not outcome.errors:
            for dindex, number, model in valid:
                self._commit(spec, dindex, number, model, opts, outcome)
        return outcome

    def _update(
        self,
        spec: FormSpec,
        record_id: int,
        model: dict[str, Any],
        opts: SaveOptions,
        dindex: int,
        outcome: SaveOutcome,
    ) -> None:
        """Update by primary key (§2.3): only ``NeedUpDateFields`` when given; never audited."""
        record = self.find_id(spec.form_id, record_id)
        if record is None:
            outcome.errors.append(_error(spec.pk, f"数据不存在或已被删除（{record_id}）", dindex))
            return
        if record.status == "C":
            outcome.errors.append(
                _error(
                    None,
                    f"单据编号为“{record.number}”的{spec.caption}，单据已审核，不允许修改",
                    dindex,
                )
            )
            return
        wanted = {k.upper() for k in opts.need_update_fields}
        for key, value in model.items():
            if key.upper() in (spec.pk.upper(), spec.number_field.upper()):
                continue
            if not wanted or key.upper() in wanted:
                record.model[key] = value
        outcome.successes.append({"Id": record.id, "Number": record.number, "DIndex": dindex})

    def _commit(
        self,
        spec: FormSpec,
        dindex: int,
        number: str,
        model: dict[str, Any],
        opts: SaveOptions,
        outcome: SaveOutcome,
    ) -> None:
        record = self._insert(spec, number, model, "C" if opts.auto_audit else "A")
        outcome.successes.append({"Id": record.id, "Number": number, "DIndex": dindex})
        if opts.need_return_fields:
            outcome.return_data.append(
                {k: ci_get(record.model, k) for k in opts.need_return_fields}
            )
