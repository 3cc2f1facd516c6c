"""Whether a flow's form template holds what the mapping reads (the doctor's schema check).

Pure: compares the components of a form-schema answer (dingtalk.md §9.5.1) with the reads of
the mapping; :mod:`dingdee_extractor.doctor` fetches the schema and reports the checks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from dingdee_common.doctor import Check, Level

__all__ = ["Component", "Read", "component_checks", "schema_components"]

_NUMERIC = frozenset({"NumberField", "MoneyField", "CalculateField"})
_TEXT = frozenset({"TextField", "TextareaField"})
_SELECT = frozenset({"DDSelectField", "DDMultiSelectField"})
# pick → component types it can read (transformer fieldrule._PICKERS); "value" is decided by convert
_PICK_TYPES = {
    "rows": frozenset({"TableField", "DDTableField"}),
    "key": _SELECT,
    "userid": frozenset({"InnerContactField"}),
    "userids": frozenset({"InnerContactField"}),
    "name": frozenset({"InnerContactField"}),
    "names": frozenset({"InnerContactField"}),
    "start": frozenset({"DDDateRangeField"}),
    "end": frozenset({"DDDateRangeField"}),
    "count": frozenset({"TableField", "DDAttachment", "DDMultiSelectField", "DDPhotoField"}),
    "file_names": frozenset({"DDAttachment"}),
}
_CONVERT_TYPES = {
    "money": _NUMERIC,
    "decimal": _NUMERIC,
    "int": _NUMERIC,
    "date": frozenset({"DDDateField"}),
    "datetime": frozenset({"DDDateField"}),
}


class Read(Protocol):
    """What the mapping reads (``dingdee_transformer.reads.FormRead``)."""

    @property
    def name(self) -> str: ...
    @property
    def table(self) -> str | None: ...
    @property
    def pick(self) -> str: ...
    @property
    def convert(self) -> str: ...
    @property
    def path(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Component:
    id: str
    kind: str
    label: str
    table: str | None  # the id of the TableField it is a column of


def schema_components(result: Mapping[str, Any]) -> list[Component]:
    """Flatten ``schemaContent.items`` and their ``children`` (§9.5.1 "Mapping check"); layout
    containers (``FieldGroup``) are walked through, a table's children are its columns."""
    found: list[Component] = []

    def walk(items: Iterable[Any], table: str | None) -> None:
        for item in items:
            if not isinstance(item, dict):
                continue
            props = item.get("props") or {}
            kind = str(item.get("componentName") or "")
            cid = str(props.get("id") or "")
            found.append(Component(cid, kind, str(props.get("label") or ""), table))
            children = item.get("children") or []
            walk(children, cid if kind in _PICK_TYPES["rows"] else table)

    walk(((result.get("schemaContent") or {}).get("items")) or [], None)
    return found


def _find(components: Sequence[Component], name: str, table: str | None) -> list[Component]:
    scope = [c for c in components if c.table == table]
    by_id = [c for c in scope if c.id == name]
    return by_id or [c for c in scope if c.label == name]


def _compatible(read: Read, comp: Component) -> tuple[Level, str] | None:
    """None when ``comp`` can be read as ``read`` says; else the level and why not."""
    allowed = _PICK_TYPES.get(read.pick)
    if allowed is not None:
        return (
            None if comp.kind in allowed else ("error", f"pick {read.pick} needs {sorted(allowed)}")
        )
    if comp.kind in _PICK_TYPES["rows"]:
        return "error", "a table is read with rows: (or pick: count)"
    wanted = _CONVERT_TYPES.get(read.convert)
    if wanted is None or comp.kind in wanted:
        return None
    if comp.kind in _TEXT:  # free text may hold a number or a date; it fails per record if not
        return "warning", f"convert {read.convert} of free text fails for records that hold none"
    return "error", f"convert {read.convert} needs {sorted(wanted)}"


def _read_problem(
    read: Read,
    matches: Sequence[Component],
    process_code: str,
    components: Sequence[Component],
    table_id: str | None,
) -> tuple[Level, str] | None:
    """Why ``read`` fails against the components it ``matches`` (level and message), or None."""
    if not matches:
        labels = sorted({c.label for c in components if c.table == table_id})
        return (
            "error",
            f"{read.path} reads {read.name!r}, which template {process_code} does not have "
            f"(it has: {', '.join(labels)}); rename it in flows.yaml or restore it in "
            "DingTalk's form designer",
        )
    if len(matches) > 1:
        ids = ", ".join(c.id for c in matches)
        return (
            "error",
            f"{read.path}: label {read.name!r} is ambiguous ({ids}); name the component id",
        )
    problem = _compatible(read, matches[0])
    if problem is None:
        return None
    level, why = problem
    return level, f"{read.path} reads a {matches[0].kind}: {why}; fix the rule in flows.yaml"


def component_checks(
    flow: str, process_code: str, result: Mapping[str, Any], reads: Sequence[Read]
) -> list[Check]:
    """Compare what ``flow`` reads with the template's schema ``result``."""
    components = schema_components(result)
    checks: list[Check] = []
    status = result.get("status")
    if status != "PUBLISHED":
        checks.append(
            Check(
                "dingtalk",
                flow,
                "template status",
                "warning",
                f"template {process_code} is {status} (not PUBLISHED): no new approvals; "
                "publish it in DingTalk's form designer or disable the flow",
            )
        )
    tables: dict[str, str] = {}
    for read in reads:
        table_id = None
        if read.table is not None:
            table = _find(components, read.table, None)
            if not table:
                continue  # reported once, for the rows rule itself
            table_id = tables.setdefault(read.table, table[0].id)
        matches = _find(components, read.name, table_id)
        problem = _read_problem(read, matches, process_code, components, table_id)
        if problem is not None:
            what = f"column {read.table}/{read.name}" if read.table else f"component {read.name}"
            checks.append(Check("dingtalk", flow, what, *problem))
    if not checks or all(c.name == "template status" for c in checks):
        modified = datetime.fromtimestamp(int(result.get("gmtModified") or 0) / 1000, UTC)
        checks.append(
            Check(
                "dingtalk",
                flow,
                "form components",
                "ok",
                f"{len(reads)} read(s) found in template {result.get('name')!r} "
                f"(modified {modified:%Y-%m-%d %H:%M} UTC) with compatible types",
            )
        )
    return checks
