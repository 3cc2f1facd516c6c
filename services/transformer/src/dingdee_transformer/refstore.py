"""Reference tables in memory and the live lookups mapping rules resolve against (issue #14).

Every ``refdata.<source>`` topic is applied here row by row (``RefStore.apply``); a lookup is a
few dict reads, no network call. Rows keep only their source's declared fields, as a tuple, and
each lookup field gets one index (value → key, or a tuple of keys when several rows share it),
so a 50 000-employee table stays within the budget the bench measures (``bench_refdata``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from dingdee_common.refdata import LookupSpec, ReferenceConfig, RefRow, SourceSpec
from dingdee_transformer.rules import LookupProblem

__all__ = [
    "ORIGIN",
    "RECEIVED",
    "STATUS",
    "LiveLookup",
    "RefStore",
    "Row",
    "SourceTable",
    "live_tables",
    "row_values",
]

_EMPTY: tuple[str, ...] = ()
_LABELS = {"job_number": "工号", "mobile": "手机", "code": "部门编码", "name": "名称"}


# A row is one flat tuple of strings and a float: the source's field values, then its status
# (ok | forbidden | unaudited), where it came from, and when this process received it. A tuple
# of atomic values is untracked by the garbage collector, so 100 000 rows cost a full collection
# nothing, and equal strings within a row (FNumber = FStaffNumber) are stored once.
Row = tuple[Any, ...]
STATUS, ORIGIN, RECEIVED = -3, -2, -1


def row_values(row: Row) -> tuple[str, ...]:
    return row[:STATUS]


class SourceTable:
    """One source's rows by key, with the indexes its lookups need."""

    def __init__(self, name: str, spec: SourceSpec, indexed: set[str]) -> None:
        self.name = name
        self.spec = spec
        self.fields = spec.fields
        self.pos = {f: i for i, f in enumerate(self.fields)}
        self.rows: dict[str, Row] = {}
        self.index: dict[str, dict[str, str | tuple[str, ...]]] = {f: {} for f in indexed}
        self.changed_at = 0.0  # wall clock of the last change
        self.misses = 0

    def value(self, row: Row, field: str) -> str:
        return str(row[self.pos[field]])

    def upsert(self, key: str, row: RefRow) -> None:
        self.delete(key)
        same: dict[str, str] = {key: key}  # a field equal to the key (or another field) shares it
        values = []
        for f in self.fields:
            v = str(row.fields.get(f) or "")
            values.append(same.setdefault(v, v))
        status, origin = sys.intern(row.status), sys.intern(row.origin)
        self.rows[key] = (*values, status, origin, time.time())
        for field, index in self.index.items():
            v = values[self.pos[field]]
            if not v:
                continue
            old = index.get(v)
            index[v] = key if old is None else (*_tuple(old), key)
        self.changed_at = time.time()

    def delete(self, key: str) -> None:
        old = self.rows.pop(key, None)
        if old is None:
            return
        for field, index in self.index.items():
            v = old[self.pos[field]]
            keys = tuple(k for k in _tuple(index.get(v)) if k != key)
            if not keys:
                index.pop(v, None)
            else:
                index[v] = keys[0] if len(keys) == 1 else keys
        self.changed_at = time.time()

    def find(self, field: str, value: str) -> tuple[str, ...]:
        if field == self.spec.key_field:
            return (value,) if value in self.rows else _EMPTY
        return _tuple(self.index[field].get(value))


def _tuple(found: str | tuple[str, ...] | None) -> tuple[str, ...]:
    if found is None:
        return _EMPTY
    return (found,) if isinstance(found, str) else found


Listener = Callable[[str], None]


class RefStore:
    """Every source's table; ``listeners`` hear the name of a source whose rows changed."""

    def __init__(self, config: ReferenceConfig) -> None:
        self.config = config
        indexed: dict[str, set[str]] = {name: set() for name in config.sources}
        for lookup in config.lookups.values():
            if lookup.by is not None:
                indexed[lookup.source].add(lookup.by)
            for _, right in lookup.match:
                indexed[lookup.source].add(right)
        for name, fields in indexed.items():
            fields.discard(config.sources[name].key_field)
        self.tables = {
            name: SourceTable(name, spec, indexed[name]) for name, spec in config.sources.items()
        }
        self.listeners: list[Listener] = []
        self.dependents: dict[str, list[LiveLookup]] = {}  # source → lookups caching its answers

    def apply(self, source: str, key: str, row: RefRow | None) -> None:
        table = self.tables.get(source)
        if table is None:
            return
        if row is None:
            table.delete(key)
        else:
            table.upsert(key, row)
        for lookup in self.dependents.get(source, ()):
            lookup.reset()
        for listener in self.listeners:
            listener(source)


def _minutes(spec: SourceSpec) -> int:
    return max(1, round(spec.refresh_interval() / 60))


def _names(rows: list[tuple[str, Row]], table: SourceTable) -> str:
    shown = []
    for key, row in rows[:2]:
        name = table.value(row, "FName") if "FName" in table.pos else ""
        shown.append(f"{key} ({name})" if name else key)
    return " and ".join(shown)


class LiveLookup(Mapping[str, str]):
    """What ``lookup: NAME`` reads: a static override first, then the live tables.

    ``get`` returns the Kingdee value or None (missing), and raises :class:`LookupProblem` for a
    row that exists but cannot be used (two candidates; disabled). ``explain`` says why a key is
    missing and which source it waits for.
    """

    def __init__(
        self, name: str, spec: LookupSpec, store: RefStore, static: Mapping[str, str] | None
    ) -> None:
        self.name = name
        self.spec = spec
        self.static = dict(static or {})
        self.target = store.tables[spec.source]
        self.via = store.tables[spec.via] if spec.via is not None else None
        self.by = spec.by or self.target.spec.key_field
        self.label = spec.describe or name
        self._value_pos = self.target.pos[spec.value]
        # the hot path, resolved once: (DingTalk field position, Kingdee index or None = by key)
        key_field = self.target.spec.key_field
        self._steps = [
            (self.via.pos[left], None if right == key_field else self.target.index[right], right)
            for left, right in spec.match
        ] if self.via is not None else []  # fmt: skip
        self._by_index = None if self.by == key_field else self.target.index[self.by]

        # answers so far, over the static overrides; emptied (back to the overrides) by the store
        # whenever a source this lookup reads changes, so a hit is one dict read
        self._cache: dict[str, str] = dict(self.static)
        store.dependents.setdefault(spec.source, []).append(self)
        if spec.via is not None:
            store.dependents.setdefault(spec.via, []).append(self)

    def reset(self) -> None:
        if len(self._cache) != len(self.static):
            self._cache = dict(self.static)

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        found = self._cache.get(key)
        if found is not None:
            return found
        value = self._lookup(key)
        if value is None:
            return default
        self._cache[key] = value
        return value

    def _lookup(self, key: str) -> str | None:
        if self.via is None:
            return self._resolve(self._by_index, key, self.by)
        dt = self.via.rows.get(key)
        if dt is None:
            return None
        for pos, index, right in self._steps:
            wanted = dt[pos]
            if wanted:
                value = self._resolve(index, wanted, right)
                if value is not None:
                    return value
        return None

    def _resolve(
        self, index: dict[str, str | tuple[str, ...]] | None, wanted: str, field: str
    ) -> str | None:
        """One candidate that is usable: its value (fast path); otherwise ``_pick`` decides."""
        rows = self.target.rows
        hit = wanted if index is None else index.get(wanted)
        if hit is None:
            return None
        if type(hit) is str:
            row = rows.get(hit)
            if row is None:
                return None
            if row[STATUS] == "ok":
                return str(row[self._value_pos])
        return self._pick(_tuple(hit), f"{field} {wanted}")

    def _pick(self, keys: tuple[str, ...], what: str) -> str | None:
        if not keys:
            return None
        rows = [(k, self.target.rows[k]) for k in keys]
        ok = [(k, r) for k, r in rows if r[STATUS] == "ok"]
        if len(ok) > 1:
            raise LookupProblem(
                f"{self.label}: two Kingdee {self._form()} records have {what}: "
                f"{_names(ok, self.target)}; make one of them unique (never a guess)"
            )
        if ok:
            return self.target.value(ok[0][1], self.spec.value)
        forbidden = [(k, r) for k, r in rows if r[STATUS] == "forbidden"]
        if forbidden:
            raise LookupProblem(
                f"{self.label}: Kingdee {self._form()} {_names(forbidden, self.target)} with "
                f"{what} is disabled (FForbidStatus B); enable it in Kingdee, then replay"
            )
        return None  # unaudited only: waits for its audit like a missing row

    def _form(self) -> str:
        k = self.target.spec.kingdee
        return k.form_id if k is not None else self.target.name

    def explain(self, key: str) -> tuple[str, tuple[str, str]]:
        """Why ``key`` has no value, in words to act on, and the (source, key) it waits for."""
        target = self.target
        target.misses += 1
        minutes = _minutes(target.spec)
        if self.via is None:
            return (
                f"{self.label} {key!r} is not in Kingdee {self._form()} ({self.by}); create it, "
                f"it will load by itself within {minutes} minutes, or replay",
                (target.name, key),
            )
        dt = self.via.rows.get(key)
        if dt is None:
            self.via.misses += 1
            app = self.via.spec.dingtalk.app if self.via.spec.dingtalk else "?"
            return (
                f"{self.label} {key} is not in the DingTalk contacts of app {app!r} "
                f"(source {self.via.name}); it will load by itself once DingTalk lists it "
                f"(within {_minutes(self.via.spec)} minutes, at once with contact events), "
                "or replay",
                (self.via.name, key),
            )
        shown = ", ".join(
            f"{_LABELS.get(left, left)} {v}"
            for left, _ in self.spec.match
            if (v := self.via.value(dt, left))
        )
        name = self.via.value(dt, "name")
        return (
            f"{self.label} {key} ({name}{', ' + shown if shown else ''}) is not in Kingdee "
            f"{self._form()}; create the {self.label}, it will load by itself within "
            f"{minutes} minutes, or replay",
            (target.name, key),
        )

    def __getitem__(self, key: str) -> str:
        found = self.get(key)
        if found is None:
            raise KeyError(key)
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self.static)

    def __len__(self) -> int:
        return len(self.static)


def live_tables(
    store: RefStore, static: Mapping[str, Mapping[str, str]]
) -> dict[str, Mapping[str, str]]:
    """The tables mapping rules see: static ones, with a live lookup wherever one is declared
    (its static table of the same name stays as the override)."""
    tables: dict[str, Mapping[str, str]] = dict(static)
    for name, spec in store.config.lookups.items():
        tables[name] = LiveLookup(name, spec, store, static.get(name))
    return tables
