"""DingTalk's form encodings, handled once, here (contract dingtalk.md §3.4 and §6 gotcha 9).

Every ``form_component_values`` value is a string: the literal ``"null"`` means empty, tables,
attachments, multi-selects and date ranges are JSON inside the string, a table with no rows holds
its column definitions instead, and contact fields carry names in ``value`` and user ids in
``ext_value``. This module turns all of that into plain Python values the rules can read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["Component", "Form", "FormError", "Row", "is_empty", "parse_form"]

NULL_LITERAL = "null"


class FormError(ValueError):
    """A form value cannot be decoded the way its component type promises."""


def is_empty(value: Any) -> bool:
    """True for ``None``, ``""``, whitespace, the literal ``"null"`` and empty lists."""
    if value is None:
        return True
    if isinstance(value, str):
        stripped = value.strip()
        return not stripped or stripped == NULL_LITERAL
    if isinstance(value, (list, dict)):
        return not value
    return False


def _json(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise FormError(f"is not valid JSON ({exc})") from exc


@dataclass(slots=True)
class Row:
    """One row of a TableField: cells by key and by label."""

    number: int
    by_key: dict[str, Any] = field(default_factory=dict)
    by_label: dict[str, Any] = field(default_factory=dict)
    ext_by_key: dict[str, Any] = field(default_factory=dict)

    def cell(self, name: str) -> tuple[bool, Any, Any]:
        """``(found, value, extendValue)`` of the cell with key or label ``name``."""
        if name in self.by_key:
            return True, self.by_key[name], self.ext_by_key.get(name)
        if name in self.by_label:
            key = self.by_label[name]
            return True, self.by_key[key], self.ext_by_key.get(key)
        return False, None, None


@dataclass(slots=True)
class Component:
    """One form component with its raw strings; ``decoded`` reads them by component type."""

    id: str
    name: str
    component_type: str
    value: Any
    ext_value: Any

    def rows(self) -> list[Row]:
        """Rows of a TableField; ``[]`` for the empty-table quirk (column definitions) or "null".

        Raises:
            FormError: the value is not JSON or not a list of rows.
        """
        if is_empty(self.value):
            return []
        data = _json(self.value)
        if not isinstance(data, list):
            raise FormError("is not a list of table rows")
        if data and all(isinstance(r, dict) and "rowValue" not in r for r in data):
            return []  # zero rows: DingTalk returns the column definitions instead
        return [_row(i, r) for i, r in enumerate(data, start=1)]

    def contacts(self) -> list[dict[str, str]]:
        """``[{"userid", "name"}]`` of an InnerContactField (ids live in ``ext_value``)."""
        names = [] if is_empty(self.value) else [n.strip() for n in str(self.value).split(",")]
        ext = [] if is_empty(self.ext_value) else _json(self.ext_value)
        if not isinstance(ext, list):
            raise FormError("contact ext_value is not a list")
        people = [
            {"userid": str(p.get("emplId", "")), "name": str(p.get("name", ""))}
            for p in ext
            if isinstance(p, dict)
        ]
        if not people:
            people = [{"userid": "", "name": n} for n in names if n]
        return people

    def json_list(self) -> list[Any]:
        """A JSON-array value (attachments, multi-select, date range, photos); ``[]`` when empty."""
        if is_empty(self.value):
            return []
        data = _json(self.value)
        if not isinstance(data, list):
            raise FormError("is not a JSON list")
        return data

    def select_key(self) -> str | None:
        """The option key of a DDSelectField from its ``ext_value`` (``option_0``)."""
        if is_empty(self.ext_value):
            return None
        ext = _json(self.ext_value)
        return str(ext.get("key")) if isinstance(ext, dict) and ext.get("key") is not None else None


def _row(number: int, raw: Any) -> Row:
    if not isinstance(raw, dict) or not isinstance(raw.get("rowValue"), list):
        raise FormError(f"row {number} has no rowValue list")
    row = Row(number)
    for cell in raw["rowValue"]:
        if not isinstance(cell, dict):
            raise FormError(f"row {number} has a cell that is not an object")
        key = str(cell.get("key") or cell.get("label") or "")
        row.by_key[key] = cell.get("value")
        if cell.get("extendValue") is not None:
            row.ext_by_key[key] = cell.get("extendValue")
        label = cell.get("label")
        if isinstance(label, str) and label not in row.by_label:
            row.by_label[label] = key
    return row


@dataclass(slots=True)
class Form:
    """The form of one approval, addressable by component id or label."""

    by_id: dict[str, Component]
    by_label: dict[str, list[Component]]

    def find(self, name: str) -> Component | None:
        """The component with id ``name``, else the one labelled ``name``.

        Raises:
            FormError: two components carry the label ``name`` (use the id instead).
        """
        if name in self.by_id:
            return self.by_id[name]
        found = self.by_label.get(name, [])
        if len(found) > 1:
            ids = ", ".join(c.id for c in found)
            raise FormError(f"label {name!r} is ambiguous ({ids}); use the component id")
        return found[0] if found else None


def parse_form(values: Any, wanted: frozenset[str] | None = None) -> Form:
    """Index ``form_component_values``; unknown shapes become empty components, never a crash.

    With ``wanted`` (the ids and labels a flow reads), only components carrying one of them are
    indexed: :meth:`Form.find` answers the same for those names, ambiguity included.
    """
    by_id: dict[str, Component] = {}
    by_label: dict[str, list[Component]] = {}
    if not isinstance(values, list):
        return Form(by_id, by_label)
    for raw in values:
        if not isinstance(raw, dict):
            continue
        name = raw.get("name")
        # a plain label is the common case; _labels handles date ranges and odd values
        labels = [name] if type(name) is str and name and name[0] != "[" else _labels(name)
        cid, ctype = raw.get("id"), raw.get("component_type")
        cid = cid if type(cid) is str else str(cid or "")
        if wanted is not None and cid not in wanted and wanted.isdisjoint(labels):
            continue
        comp = Component(
            cid,
            labels[0] if labels else "",
            ctype if type(ctype) is str else str(ctype or ""),
            raw.get("value"),
            raw.get("ext_value"),
        )
        if comp.id:
            by_id.setdefault(comp.id, comp)
        for label in labels:
            by_label.setdefault(label, []).append(comp)
    return Form(by_id, by_label)


def _labels(name: Any) -> list[str]:
    """A component's labels; a DDDateRangeField's name is a JSON array of two (start, end)."""
    if isinstance(name, str) and name.startswith("["):
        try:
            name = orjson.loads(name)
        except orjson.JSONDecodeError:
            return [name]
    if isinstance(name, list):
        parts = [str(p) for p in name if p is not None]
        return ["/".join(parts), *parts] if parts else []
    return [str(name)] if name is not None and str(name) else []
