"""Live reference data (issue #14): where master data comes from, how it travels, how it joins.

``flows.yaml`` declares **sources** (a Kingdee base-data query, or DingTalk users/departments)
and **lookups** (what a mapping rule's ``lookup: NAME`` resolves against: a source row by a field,
or a DingTalk row joined to a Kingdee row). The owning service reads a source (the loader:
Kingdee, through its client; the extractor: DingTalk, through its token bucket) and publishes
each row to the source's compacted topic ``refdata.<source>``, keyed by the source key; the
transformer keeps every table in memory, rebuilt from the topics after a restart. A lookup miss
asks the owner for a refresh on ``refdata.requests``. Static ``reference_tables`` stay and win
over a live lookup of the same name (overrides, small fixed lists). docs/mapping.md §6.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "DINGTALK_FIELDS",
    "DingTalkSource",
    "KingdeeSource",
    "LookupSpec",
    "RefRequest",
    "RefRow",
    "ReferenceConfig",
    "SourceSpec",
    "decode_request",
    "decode_row",
    "encode_request",
    "encode_row",
    "kingdee_status",
]

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
SCHEMA_VERSION = 1

# The fields a DingTalk contact row carries (dingtalk.md §9.1.1, §9.1.4, §9.1.5). ``name_path``
# is built by the extractor from ``parent_id`` (§9.1.5: "no full-path field").
DINGTALK_FIELDS: dict[str, tuple[str, ...]] = {
    "users": ("userid", "name", "job_number", "mobile", "dept_ids"),
    "departments": ("dept_id", "name", "parent_id", "code", "name_path"),
}


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KingdeeSource(_Strict):
    """A base-data query (kingdee.md §10.2): ``ExecuteBillQuery`` paged with StartRow/Limit."""

    form_id: str = Field(min_length=1)
    key: str = Field(min_length=1, description="the field whose value keys the row (FNumber)")
    field_keys: list[str] = Field(min_length=1)
    filter: str = Field(
        default="", description="FilterString (org, …); status is read, not filtered"
    )
    order: str = Field(default="", description="OrderString; default: the key ascending")
    page_size: int = Field(default=2000, ge=1, le=10_000, description="Limit (§4.1: ≤ 10 000)")

    @model_validator(mode="after")
    def _key_is_read(self) -> KingdeeSource:
        if self.key not in self.field_keys:
            raise ValueError(f"key {self.key!r} must be one of field_keys")
        return self


class DingTalkSource(_Strict):
    """The app's contacts (dingtalk.md §9.1): users (``user/list`` per department) or departments
    (a BFS over ``department/listsub``)."""

    app: str = Field(min_length=1)
    kind: Literal["users", "departments"]


class SourceSpec(_Strict):
    kingdee: KingdeeSource | None = None
    dingtalk: DingTalkSource | None = None
    refresh_seconds: float | None = Field(
        default=None,
        gt=0,
        description="full refresh interval; default: Kingdee 600 s, DingTalk 86 400 s",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> SourceSpec:
        if (self.kingdee is None) == (self.dingtalk is None):
            raise ValueError("a source is either kingdee or dingtalk (exactly one)")
        return self

    @property
    def owner(self) -> str:
        return "loader" if self.kingdee is not None else "extractor"

    @property
    def fields(self) -> tuple[str, ...]:
        if self.kingdee is not None:
            return tuple(self.kingdee.field_keys)
        return DINGTALK_FIELDS[self._dingtalk().kind]

    def _dingtalk(self) -> DingTalkSource:
        if self.dingtalk is None:
            raise ValueError("not a DingTalk source")
        return self.dingtalk

    @property
    def key_field(self) -> str:
        if self.kingdee is not None:
            return self.kingdee.key
        return "userid" if self._dingtalk().kind == "users" else "dept_id"

    def refresh_interval(self) -> float:
        if self.refresh_seconds is not None:
            return self.refresh_seconds
        return 600.0 if self.kingdee is not None else 86_400.0


class LookupSpec(_Strict):
    """What ``lookup: NAME`` returns: ``value`` of a ``source`` row found ``by`` a field, or
    (with ``via``) of the Kingdee row matching a DingTalk row on the first ``match`` pair that
    finds one: ``[[job_number, FStaffNumber], [mobile, FMobile]]``."""

    source: str
    value: str
    by: str | None = None
    via: str | None = None
    match: list[tuple[str, str]] = Field(default_factory=list)
    describe: str = Field(default="", description="how a reason names the row (员工, 部门, …)")

    @model_validator(mode="after")
    def _shape(self) -> LookupSpec:
        if self.via is None and self.match:
            raise ValueError("match needs via (the DingTalk source the rule's key belongs to)")
        if self.via is not None and not self.match:
            raise ValueError("via needs match: [[dingtalk_field, kingdee_field], …]")
        if self.via is not None and self.by is not None:
            raise ValueError("use either by or via, not both")
        return self


class ReferenceConfig(_Strict):
    """``reference_sources`` and ``reference_lookups`` of ``flows.yaml``, cross-checked."""

    sources: dict[str, SourceSpec] = Field(default_factory=dict)
    lookups: dict[str, LookupSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _cross(self) -> ReferenceConfig:
        for name in self.sources:
            if not _NAME.match(name):
                raise ValueError(f"source name {name!r}: lower-case letters, digits and '_'")
        for name, lookup in self.lookups.items():
            src = self.sources.get(lookup.source)
            if src is None:
                raise ValueError(f"lookup {name!r}: no source {lookup.source!r}")
            if lookup.value not in src.fields:
                raise ValueError(f"lookup {name!r}: {lookup.source} has no field {lookup.value!r}")
            if lookup.by is not None and lookup.by not in src.fields:
                raise ValueError(f"lookup {name!r}: {lookup.source} has no field {lookup.by!r}")
            if lookup.via is not None:
                via = self.sources.get(lookup.via)
                if via is None or via.dingtalk is None:
                    raise ValueError(f"lookup {name!r}: via {lookup.via!r} is no DingTalk source")
                for left, right in lookup.match:
                    if left not in via.fields or right not in src.fields:
                        raise ValueError(f"lookup {name!r}: match [{left}, {right}] names no field")
        return self

    def owned_by(self, owner: str) -> dict[str, SourceSpec]:
        return {n: s for n, s in self.sources.items() if s.owner == owner}


# ---- wire format ---------------------------------------------------------------------------


class RefRow(_Strict):
    """One row of ``refdata.<source>`` (a tombstone deletes it).

    ``status``: ``ok``; ``forbidden`` (Kingdee ``FForbidStatus`` B: a lookup reports it as
    disabled, never uses it); ``unaudited`` (``FDocumentStatus`` not C: a lookup waits for it).
    """

    schema_version: int = SCHEMA_VERSION
    source: str
    key: str
    fields: dict[str, str]
    status: Literal["ok", "forbidden", "unaudited"] = "ok"
    origin: str = ""
    updated_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())


class RefRequest(_Strict):
    """A refresh request on ``refdata.requests``: the owner of ``source`` reads it again (the
    row ``key`` only, where the API can)."""

    schema_version: int = SCHEMA_VERSION
    source: str
    key: str = ""
    reason: str = ""
    requested_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())


def encode_row(row: RefRow) -> bytes:
    return orjson.dumps(row.model_dump())


def decode_row(raw: bytes) -> RefRow:
    return RefRow.model_validate(orjson.loads(raw))


def encode_request(request: RefRequest) -> bytes:
    return orjson.dumps(request.model_dump())


def decode_request(raw: bytes) -> RefRequest:
    return RefRequest.model_validate(orjson.loads(raw))


def kingdee_status(fields: dict[str, Any]) -> Literal["ok", "forbidden", "unaudited"]:
    """kingdee.md §10.2 status table: forbidden wins over unaudited; absent columns: usable."""
    if str(fields.get("FForbidStatus") or "A") == "B":
        return "forbidden"
    if str(fields.get("FDocumentStatus") or "C") != "C":
        return "unaudited"
    return "ok"
