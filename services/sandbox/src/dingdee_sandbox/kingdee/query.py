"""``ExecuteBillQuery`` / ``BillQuery`` over the sandbox store (contract §4, §8.4 item 20).

``FilterString`` supports the subset an idempotency check and the usual sync jobs need:
``field = 'v'``, ``<>``/``!=``, ``in (...)``, ``not in (...)``, ``like``/``not like`` (SQL Server
patterns: ``%``, ``_``, ``[x]``; reconciliation lists a flow's bills by number pattern with it),
``and``/``or`` and parentheses, plus the newer array form. ``FilterString`` is a SQL where-clause
fragment on Kingdee's database (contract §4.1), so these are the SQL operators.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

from dingdee_sandbox.kingdee.envelope import as_int, ci_get
from dingdee_sandbox.kingdee.forms import FORMS, FormSpec
from dingdee_sandbox.kingdee.store import Record, Store

__all__ = ["QueryError", "run_query"]

MAX_LIMIT = 10000
_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<op><>|!=|>=|<=|=|>|<)|(?P<p>[(),])"
    r"|(?P<num>-?\d+(?:\.\d+)?)|(?P<id>[A-Za-z_][A-Za-z0-9_.]*))"
)
_ARRAY_COMPARE = {"67": "=", "=": "=", "83": "<>", "<>": "<>", "!=": "<>"}

Predicate = Callable[[Record], bool]


class QueryError(Exception):
    """The query names an unknown form or field, or its filter cannot be parsed."""


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise QueryError(f"FilterString 语法错误：{text[pos : pos + 20]}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "str":
            value = value[1:-1].replace("''", "'")
        out.append((kind, value))
        pos = match.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


class _Parser:
    """Recursive descent over the tokens; field names are resolved through ``getter``."""

    def __init__(
        self, tokens: list[tuple[str, str]], getter: Callable[[str], Callable[[Record], Any]]
    ):
        self.toks = tokens
        self.i = 0
        self.getter = getter

    def peek(self) -> tuple[str, str]:
        return self.toks[self.i] if self.i < len(self.toks) else ("", "")

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        self.i += 1
        return tok

    def word(self, *words: str) -> bool:
        kind, value = self.peek()
        return kind == "id" and value.lower() in words

    def parse(self) -> Predicate:
        pred = self.expr()
        if self.i != len(self.toks):
            raise QueryError(f"FilterString 语法错误：多余的 {self.peek()[1]}")
        return pred

    def expr(self) -> Predicate:
        parts = [self.term()]
        while self.word("or"):
            self.take()
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else (lambda r: any(p(r) for p in parts))

    def term(self) -> Predicate:
        parts = [self.factor()]
        while self.word("and"):
            self.take()
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else (lambda r: all(p(r) for p in parts))

    def factor(self) -> Predicate:
        if self.peek() == ("p", "("):
            self.take()
            inner = self.expr()
            if self.take() != ("p", ")"):
                raise QueryError("FilterString 语法错误：缺少右括号")
            return inner
        kind, name = self.take()
        if kind != "id":
            raise QueryError(f"FilterString 语法错误：{name}")
        get = self.getter(name)
        negate = self.word("not")
        if negate:
            self.take()
        if self.word("in"):
            self.take()
            values = self.values()
            return lambda r: (str(get(r)) in values) != negate
        if self.word("like"):
            self.take()
            regex = _like(self.take()[1])
            return lambda r: (regex.fullmatch(str(get(r) or "")) is not None) != negate
        op_kind, op = self.take()
        if op_kind != "op" or negate:
            raise QueryError(f"FilterString 语法错误：不支持的比较 {op}")
        value = self.take()[1]
        return _compare(get, op, value)

    def values(self) -> set[str]:
        if self.take() != ("p", "("):
            raise QueryError("FilterString 语法错误：in 后需要括号")
        values: set[str] = set()
        while True:
            values.add(self.take()[1])
            sep = self.take()
            if sep == ("p", ")"):
                return values
            if sep != ("p", ","):
                raise QueryError("FilterString 语法错误：in 列表")


def _like(pattern: str) -> re.Pattern[str]:
    """A SQL Server ``LIKE`` pattern as a regex (its default collation ignores case)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        end = pattern.find("]", i + 2) if ch == "[" else -1
        if ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        elif end > 0:  # a character class such as [%] (a literal percent sign) or [a-c]
            out.append("[" + pattern[i + 1 : end].replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL | re.IGNORECASE)


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "<>": operator.ne,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
}


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _compare(get: Callable[[Record], Any], op: str, value: str) -> Predicate:
    """Numeric when both sides are numbers, else text; the literal is parsed once (a 50 000-row
    base-data page must not raise an exception per row)."""
    compare, right_num = _OPS[op], _number(value)

    def check(record: Record) -> bool:
        actual = get(record)
        left = str(actual) if actual is not None else ""
        left_num = _number(left) if right_num is not None else None
        if left_num is not None:
            return compare(left_num, right_num)
        return compare(left, value)

    return check


def _array_filter(items: list[Any]) -> str:
    parts: list[str] = []
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            raise QueryError("FilterString 数组元素必须是对象")
        op = _ARRAY_COMPARE.get(str(ci_get(item, "Compare", "67")))
        if op is None:
            raise QueryError(f"FilterString 不支持的 Compare {ci_get(item, 'Compare')}")
        value = str(ci_get(item, "Value", "")).replace("'", "''")
        if n:
            parts.append("or" if str(ci_get(item, "Logic", "0")) == "1" else "and")
        parts.append(
            f"{ci_get(item, 'Left', '')} {ci_get(item, 'FieldName')} {op} '{value}'"
            f" {ci_get(item, 'Right', '')}"
        )
    return " ".join(parts)


def _getter(store: Store, spec: FormSpec) -> Callable[[str], Callable[[Record], Any]]:
    known = spec.field_keys()
    refs = {k.upper(): f.ref for k, f in spec.fields.items() if f.ref}
    entries = spec.entry_field_keys()

    def make(key: str) -> Callable[[Record], Any]:
        base, _, suffix = key.partition(".")
        upper = base.upper()
        if upper not in known or (suffix and upper not in refs):
            raise QueryError(f"元数据中标识为{key}的字段不存在")
        if upper == spec.pk.upper():
            return lambda r: r.id
        if upper == spec.number_field.upper():
            return lambda r: r.number
        if upper in ("FDOCUMENTSTATUS", "FFORBIDSTATUS"):
            return (lambda r: r.status) if upper == "FDOCUMENTSTATUS" else _forbid_status
        if upper in refs:
            return _ref_getter(store, upper, refs[upper] or "", suffix.upper())
        if upper in entries:  # the first entry row's value (one row per bill, not per entry)
            return lambda r: _first_entry_value(r, entries[upper], base)
        return lambda r: ci_get(r.model, base)

    return make


def _forbid_status(record: Record) -> Any:
    """``FForbidStatus`` as stored (base data, kingdee.md §10.5 item 1), else A (enabled)."""
    return ci_get(record.model, "FForbidStatus") or "A"


def _first_entry_value(record: Record, entity: str, key: str) -> Any:
    rows = ci_get(record.model, entity)
    first = rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], dict) else {}
    return ci_get(first, key)


def _ref_getter(store: Store, key: str, kind: str, suffix: str) -> Callable[[Record], Any]:
    def get(record: Record) -> Any:
        number = store.ref_number(ci_get(record.model, key))
        if suffix == "FNUMBER":
            return number
        real_kind = kind if kind != "contact" else "staff"
        item = store.base.find(real_kind, number) if number else None
        if suffix == "FNAME":
            return item.name if item else None
        return item.id if item else 0

    return get


def run_query(store: Store, data: Any, *, as_objects: bool) -> list[Any]:
    """Rows of one query: arrays in ``FieldKeys`` order, or objects keyed by the keys verbatim.

    Raises:
        QueryError: unknown ``FormId`` or field key, or an unparsable ``FilterString``.
    """
    if not isinstance(data, dict):
        raise QueryError("缺少查询参数 data")
    form_id = str(ci_get(data, "FormId") or "")
    spec = FORMS.get(form_id.upper())
    if spec is None:
        raise QueryError("业务对象不存在")
    make = _getter(store, spec)
    keys = [k.strip() for k in str(ci_get(data, "FieldKeys") or "").split(",") if k.strip()]
    getters = [make(k) for k in keys]
    raw_filter = ci_get(data, "FilterString") or ""
    if isinstance(raw_filter, list):
        raw_filter = _array_filter(raw_filter)
    rows = store.bills(form_id)
    if str(raw_filter).strip():
        predicate = _Parser(_tokens(str(raw_filter)), make).parse()
        rows = [r for r in rows if predicate(r)]
    order = str(ci_get(data, "OrderString") or "").split()
    if order:
        get_order = make(order[0])
        rows.sort(key=lambda r: str(get_order(r)), reverse=order[-1].upper() == "DESC")
    top = as_int(ci_get(data, "TopRowCount"), 0)
    if top > 0:
        rows = rows[:top]
    start = max(as_int(ci_get(data, "StartRow"), 0), 0)
    limit = min(as_int(ci_get(data, "Limit"), 0) or MAX_LIMIT, MAX_LIMIT)
    rows = rows[start : start + limit]
    if as_objects:
        return [{k: g(r) for k, g in zip(keys, getters, strict=True)} for r in rows]
    return [[g(r) for g in getters] for r in rows]
