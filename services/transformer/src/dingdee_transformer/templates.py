"""Templates and their placeholders.

``{business_id}`` (an approval attribute), ``{form:补单事由}``, ``{cell:金额}``, ``{row}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from dingdee_transformer.encodings import FormError, is_empty
from dingdee_transformer.rulebase import Context
from dingdee_transformer.schema import PLACEHOLDER, FieldRule

__all__ = ["Template", "compile_template", "form_names"]


def _placeholder(name: str, ctx: Context) -> Any:
    if name == "row":
        return ctx.row.number if ctx.row else None
    if name.startswith("form:"):
        comp = ctx.form.find(name[5:])
        return comp.value if comp else None
    if name.startswith("cell:"):
        return ctx.row.cell(name[5:])[1] if ctx.row else None
    return ctx.attrs.get(name)


def form_names(fields: Mapping[str, FieldRule], templates: Iterable[str] = ()) -> frozenset[str]:
    """The component ids and labels that ``fields`` and ``templates`` read from a form."""
    names: set[str] = set()
    texts = list(templates)
    for rule in fields.values():
        if rule.component is not None:
            names.add(rule.component)
        if rule.template is not None:
            texts.append(rule.template)
        if rule.rows is not None:
            names.add(rule.rows.table)
            names |= form_names(rule.rows.fields)
    for text in texts:
        for placeholder in PLACEHOLDER.findall(text):
            name = placeholder.strip()
            if name.startswith("form:"):
                names.add(name[5:])
    return frozenset(names)


Template = Callable[[Context], tuple[str, str | None]]
"""A compiled template: the filled-in text and the first problem (or ``None``)."""


def compile_template(template: str) -> Template:
    """Fill ``{business_id}``, ``{form:补单事由}``, ``{cell:金额}``, ``{row}`` placeholders.

    The template is split once; the returned function gives the text and the first problem (an
    empty or unknown placeholder), or ``None``.
    """
    parts = PLACEHOLDER.split(template)  # literal, name, literal, name, …, literal
    head, pairs = (
        parts[0],
        [(n.strip(), lit) for n, lit in zip(parts[1::2], parts[2::2], strict=True)],
    )

    def render(ctx: Context) -> tuple[str, str | None]:
        out = [head]
        problem: str | None = None
        for name, literal in pairs:
            try:
                value = _placeholder(name, ctx)
            except FormError as exc:
                problem = problem or f"placeholder {{{name}}}: {exc}"
                value = None
            else:
                if is_empty(value) or isinstance(value, (dict, list)):
                    problem = problem or f"placeholder {{{name}}} is empty"
                    value = None
            out.append("" if value is None else str(value).strip())
            out.append(literal)
        return "".join(out), problem

    return render
