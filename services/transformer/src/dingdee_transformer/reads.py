"""What a compiled flow reads from a DingTalk form and writes to a Kingdee form (for the doctor).

The transformer indexes only the form components a flow reads (``CompiledFlow.form_names``); the
doctor needs the same set with more detail: which names are header components, which are table
columns (and of which table), and how each is read (``pick``, ``convert``), to compare them with
the template's schema. Both are walked from the validated ``MappingSpec``, never from raw YAML.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from dingdee_transformer.flowspec import CompiledFlow
from dingdee_transformer.schema import PLACEHOLDER, FieldRule

__all__ = ["FormRead", "form_reads", "target_keys"]


@dataclass(frozen=True, slots=True)
class FormRead:
    """One form component (``table`` None) or table column (``table`` its TableField) read."""

    name: str  # component / column label or id, as the mapping names it
    table: str | None
    pick: str
    convert: str
    path: str  # where the mapping names it, e.g. mapping.fields.FCausa


def _placeholders(text: str, prefix: str) -> Iterator[str]:
    for placeholder in PLACEHOLDER.findall(text):
        name = placeholder.strip()
        if name.startswith(prefix):
            yield name[len(prefix) :]


def _reads(fields: Mapping[str, FieldRule], prefix: str, table: str | None) -> Iterator[FormRead]:
    for key, rule in fields.items():
        path = f"{prefix}.{key}"
        if rule.component is not None:
            yield FormRead(rule.component, None, rule.pick, rule.convert, path)
        if rule.cell is not None:
            yield FormRead(rule.cell, table, rule.pick, rule.convert, path)
        if rule.template is not None:
            for name in _placeholders(rule.template, "form:"):
                yield FormRead(name, None, "value", "text", path)
            for name in _placeholders(rule.template, "cell:"):
                yield FormRead(name, table, "value", "text", path)
        if rule.rows is not None:
            yield FormRead(rule.rows.table, None, "rows", "raw", path)
            yield from _reads(rule.rows.fields, f"{path}.rows.fields", rule.rows.table)


def form_reads(flow: CompiledFlow) -> list[FormRead]:
    """Every component and table column ``flow`` reads (its bill key included), in mapping order."""
    reads = list(_reads(flow.mapping.fields, "mapping.fields", None))
    reads += [
        FormRead(name, None, "value", "text", "target.bill_key")
        for name in _placeholders(flow.target.bill_key, "form:")
    ]
    return reads


def target_keys(flow: CompiledFlow) -> dict[str, str]:
    """Kingdee field key → where the mapping sets it, for every key ``ExecuteBillQuery`` can check.

    Header keys by name; entry fields by name too (kingdee.md §10.3: "entry fields are checked the
    same way"), the entry id as ``<entity>_FEntryID`` (§4.1). The entity key itself (``FEntity``)
    exists only in Save models and cannot be queried (§10.3), so it is left out.
    """
    keys = {flow.target.number_field: "target.number_field"}
    for key, rule in flow.mapping.fields.items():
        if rule.rows is None:
            keys.setdefault(key, f"mapping.fields.{key}")
            continue
        for entry_key in rule.rows.fields:
            name = f"{key}_{entry_key}" if entry_key.upper() == "FENTRYID" else entry_key
            keys.setdefault(name, f"mapping.fields.{key}.rows.fields.{entry_key}")
    return keys
