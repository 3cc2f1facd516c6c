"""The mapping language: pydantic models of a flow's ``target`` and ``mapping`` sections.

A bad ``flows.yaml`` fails at start-up (and in ``dingdee mapping check``) with the flow, the key
path and what is wrong, e.g. ``flow 'petty-cash' mapping.fields.FDate: give exactly one source``.
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "CONVERSIONS",
    "DEFAULT_MAX_ABS",
    "NUMERIC",
    "PLACEHOLDER",
    "CrossCheck",
    "FieldRule",
    "LinkedChangeAction",
    "MappingSpec",
    "Qualify",
    "RowsRule",
    "TargetSpec",
]

Conversion = Literal["text", "money", "decimal", "int", "date", "datetime", "bool", "raw"]
CONVERSIONS: tuple[str, ...] = (
    "text",
    "money",
    "decimal",
    "int",
    "date",
    "datetime",
    "bool",
    "raw",
)
NUMERIC = frozenset({"money", "decimal", "int"})
DEFAULT_MAX_ABS = Decimal("9999999999999.99")
"""The largest money amount unless a rule sets ``max_abs``: 13 digits before the point, as
Kingdee's amount columns (decimal(23,10)) hold."""
Pick = Literal[
    "value",
    "label",
    "key",
    "userid",
    "userids",
    "name",
    "names",
    "start",
    "end",
    "count",
    "file_names",
    "rows",
]
LinkedChangeAction = Literal["dead_letter", "skip", "map"]
_SOURCES = ("const", "component", "attr", "template", "cell", "rows")
PLACEHOLDER = re.compile(r"\{([^{}]+)\}")  # {business_id}, {form:补单事由}: templates and bill keys
_KINGDEE_KEY = re.compile(r"^F[A-Za-z0-9_]+$")


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FieldRule(_Strict):
    """How one Kingdee Model field gets its value: one source, then optional steps in order.

    Steps run in this order: pick → trim → map → lookup → convert → checks (required, pattern,
    max_length; for numbers sign, min/max/range and max_abs) → ref (wrap as
    ``{"FNumber": value}``).
    """

    # sources (exactly one)
    const: Any = None
    component: str | None = Field(default=None, description="form component label or id")
    attr: str | None = Field(default=None, description="approval attribute, e.g. originator_userid")
    template: str | None = Field(default=None, description="text with {placeholders}")
    cell: str | None = Field(default=None, description="table cell label or key (row rules only)")
    rows: RowsRule | None = None
    # steps
    pick: Pick = "value"
    trim: bool = True
    map: dict[str, Any] | None = None
    map_default: Any = Field(default=None, description="value when no map entry matches")
    lookup: str | None = Field(default=None, description="name of a reference table")
    lookup_default: str | None = None
    convert: Conversion = "text"
    precision: int = Field(default=2, ge=0, le=10)
    required: bool = False
    pattern: str | None = None
    max_length: int | None = Field(default=None, ge=1)
    min: Decimal | None = Field(default=None, description="smallest number allowed (inclusive)")
    max: Decimal | None = Field(default=None, description="largest number allowed (inclusive)")
    range: tuple[Decimal, Decimal] | None = Field(
        default=None, description="[min, max] in one key (inclusive)"
    )
    max_abs: Decimal | None = Field(
        default=None,
        gt=0,
        description="largest magnitude allowed; money defaults to DEFAULT_MAX_ABS",
    )
    allow_negative: bool = Field(default=False, description="money may be below 0 (refunds)")
    allow_zero: bool = Field(default=False, description="money may be 0")
    ref: str | None = Field(default=None, description="wrap the value as {ref: value}")
    default: Any = Field(default=None, description="value used when the source is empty")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        # A bare scalar or list in YAML (``FExchangeRate: 1.0``) is a constant, and so is an object
        # whose keys are all Kingdee field keys (``{FNumber: "100"}``); rule keys are lower-case,
        # so a misspelt rule key still fails as an unknown key.
        if not isinstance(data, dict):
            return {"const": data}
        if data and all(isinstance(k, str) and _KINGDEE_KEY.match(k) for k in data):
            return {"const": data}
        return data

    @model_validator(mode="after")
    def _one_source(self) -> FieldRule:
        given = [
            name
            for name in _SOURCES
            if getattr(self, name) is not None
            or (name == "const" and "const" in self.model_fields_set)
        ]
        if len(given) != 1:
            got = ", ".join(given) or "none"
            raise ValueError(f"give exactly one source of {', '.join(_SOURCES)} (got {got})")
        if self.map is not None and self.lookup is not None:
            raise ValueError("use either map or lookup, not both")
        self._numeric_checks()
        return self

    def _numeric_checks(self) -> None:
        given = [
            k
            for k in ("min", "max", "range", "max_abs", "allow_negative", "allow_zero")
            if k in self.model_fields_set
        ]
        if given and self.convert not in NUMERIC:
            raise ValueError(f"{', '.join(given)}: only for convert: money, decimal or int")
        if self.range is not None and (self.min is not None or self.max is not None):
            raise ValueError("use either range or min/max, not both")
        low, high = self.bounds
        if low is not None and high is not None and low > high:
            raise ValueError(f"min {low} is greater than max {high}")

    @property
    def bounds(self) -> tuple[Decimal | None, Decimal | None]:
        """The inclusive ``(min, max)`` of ``min``/``max`` or ``range``."""
        return self.range if self.range is not None else (self.min, self.max)

    @field_validator("pattern")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression: {exc}") from exc
        return value

    @field_validator("template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None and not PLACEHOLDER.search(value):
            raise ValueError("template has no {placeholder}; use const for fixed text")
        return value

    @cached_property
    def source_kind(self) -> str:
        """Which source this rule reads (``component``, ``cell``, ``const`` …)."""
        for name in _SOURCES:
            if getattr(self, name) is not None:
                return name
        return "const"

    @cached_property
    def has_default(self) -> bool:
        """``default`` was given (``default: null`` included)."""
        return "default" in self.model_fields_set

    @cached_property
    def has_map_default(self) -> bool:
        """``map_default`` was given (``map_default: null`` included)."""
        return "map_default" in self.model_fields_set


class RowsRule(_Strict):
    """A TableField (明细) becomes entry rows (``FEntity``): one row per table row."""

    table: str = Field(description="TableField label or id")
    fields: dict[str, FieldRule]
    min_rows: int = Field(default=0, ge=0)
    max_rows: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _no_nested_rows(self) -> RowsRule:
        for key, rule in self.fields.items():
            if rule.rows is not None or rule.component is not None:
                raise ValueError(f"row field {key}: use cell, attr, const or template inside rows")
        return self


class CrossCheck(_Strict):
    """A check across fields: a form total must equal the sum of the rows' amounts.

    ``total`` is a rule like any field's (``{component: 合计, convert: money}``); ``sum_of``
    names a row field of a ``rows`` field, ``FEntity.FTaxSubmitAmt``: the sum of its values as
    they go to Kingdee.
    """

    total: FieldRule
    sum_of: str = Field(pattern=r"^F[A-Za-z0-9_]+\.F[A-Za-z0-9_]+$")

    @model_validator(mode="after")
    def _numeric_total(self) -> CrossCheck:
        if self.total.convert not in NUMERIC or self.total.ref is not None:
            raise ValueError("total needs convert: money, decimal or int, and no ref")
        return self


class Qualify(_Strict):
    """Which approval snapshots become bills; the others are skipped (not dead-lettered)."""

    status: list[str] = Field(default_factory=lambda: ["COMPLETED"])
    result: list[str] = Field(default_factory=lambda: ["agree"])


class TargetSpec(_Strict):
    """The Kingdee side of a flow."""

    form_id: str = Field(min_length=1)
    number_field: str = "FBillNo"
    bill_key: str = Field(description="template of the idempotency key, e.g. BYJ{business_id}")
    save_options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("bill_key")
    @classmethod
    def _bill_key(cls, value: str) -> str:
        if "{" not in value and not value.strip():
            raise ValueError("bill_key must not be empty")
        return value


class MappingSpec(_Strict):
    """The mapping section of a flow."""

    qualify: Qualify = Qualify()
    on_linked_change: LinkedChangeAction = Field(
        default="dead_letter",
        description="what a MODIFY/REVOKE instance of an approved one does",
    )
    fields: dict[str, FieldRule] = Field(min_length=1)
    checks: list[CrossCheck] = Field(
        default_factory=list, description="checks across fields, after every field mapped"
    )


FieldRule.model_rebuild()
