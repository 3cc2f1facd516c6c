"""The mapping language: pydantic models of a flow's ``target`` and ``mapping`` sections.

A bad ``flows.yaml`` fails at start-up (and in ``dingdee mapping check``) with the flow, the key
path and what is wrong, e.g. ``flow 'petty-cash' mapping.fields.FDate: give exactly one source``.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "CONVERSIONS",
    "PLACEHOLDER",
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
    max_length) → ref (wrap as ``{"FNumber": value}``).
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
        return self

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


FieldRule.model_rebuild()
