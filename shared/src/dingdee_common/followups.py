"""What a flow does after its bill is saved (issue #18): attachments and the write-back comment.

``flows.yaml`` declares, per flow::

    attachments:
      components: [附件]            # DDAttachment components (ids or labels) whose files go along
      file_types: [pdf, jpg, png]   # optional: other types are refused (a dead letter, replayable)
      max_bytes: 20000000           # optional: larger files are refused the same way
    writeback:
      enabled: true
      outcomes: [saved, dead_lettered]
      comment_user: originator      # or a DingTalk userid that signs the comment
      notify: comment               # comment | notification (a work notification to the
                                    # applicant, from the app's agent) | both
      saved_text: "已生成金蝶{form_name} {number}"
      dead_lettered_text: "未能生成金蝶{form_name}：{reason}"

The transformer lists the declared components' files in ``SourceRef.files``; the extractor
resolves their download URLs and writes the comment; the loader uploads the files (DESIGN §11).
"""

from __future__ import annotations

import string
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dingdee_common.contracts.v1 import FileRef
from dingdee_common.errors import FatalError
from dingdee_common.flows import FlowEntry

__all__ = [
    "AttachmentSpec",
    "Channel",
    "FollowupSpec",
    "WritebackSpec",
    "files_in_form",
    "followup_of",
    "refusal",
]

Channel = Literal["comment", "notification"]
_FIELDS = {"form_name", "number", "bill_key", "reason", "business_id", "flow"}
# Kingdee form ids → the words an applicant reads in a comment
FORM_NAMES = {"ER_ExpReimbursement": "费用报销单", "BD_Department": "部门"}


class AttachmentSpec(BaseModel):
    """``attachments:`` of a flow."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    components: list[str] = Field(min_length=1)
    file_types: list[str] | None = None
    max_bytes: int | None = Field(default=None, gt=0)

    @field_validator("file_types")
    @classmethod
    def _lower(cls, value: list[str] | None) -> list[str] | None:
        return [v.lower().lstrip(".") for v in value] if value is not None else None


class WritebackSpec(BaseModel):
    """``writeback:`` of a flow: a comment on the approval, once per approval and outcome."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    outcomes: list[Literal["saved", "dead_lettered"]] = Field(default=["saved"])
    comment_user: str = "originator"
    notify: Literal["comment", "notification", "both"] = "comment"
    saved_text: str = "已生成金蝶{form_name} {number}"
    dead_lettered_text: str = "未能生成金蝶{form_name}：{reason}。请联系财务处理。"

    @field_validator("saved_text", "dead_lettered_text")
    @classmethod
    def _template(cls, value: str) -> str:
        names = {f for _, f, _, _ in string.Formatter().parse(value) if f}
        unknown = names - _FIELDS
        if unknown:
            raise ValueError(f"unknown placeholders {sorted(unknown)}; known {sorted(_FIELDS)}")
        if not value.strip() or len(value) > 900:
            raise ValueError("the text must be 1–900 characters (DingTalk takes 1024)")
        return value

    @property
    def channels(self) -> tuple[Channel, ...]:
        """Where the text goes: the approval's comments, the applicant's work notifications."""
        if self.notify == "both":
            return ("comment", "notification")
        return (self.notify,)

    def text(self, outcome: str, **values: str) -> str:
        """The comment for ``outcome``, within DingTalk's 1 024 characters (dingtalk.md §9.4.1)."""
        template = self.saved_text if outcome == "saved" else self.dead_lettered_text
        return template.format_map({k: values.get(k, "") for k in _FIELDS})[:1024]


class FollowupSpec(BaseModel):
    """A flow's follow-ups; both optional."""

    model_config = ConfigDict(frozen=True)

    flow: str
    app: str
    form_id: str
    number_field: str = "FBillNo"
    attachments: AttachmentSpec | None = None
    writeback: WritebackSpec | None = None

    @property
    def form_name(self) -> str:
        return FORM_NAMES.get(self.form_id, self.form_id)


def followup_of(entry: FlowEntry, source: str = "flows.yaml") -> FollowupSpec | None:
    """The follow-ups ``entry`` declares, or None when it declares none.

    Raises:
        FatalError: a section breaks its rules; the message names the flow and the key.
    """
    if not entry.attachments and not entry.writeback:
        return None
    problems: list[str] = []
    attachments = writeback = None
    try:
        attachments = (
            AttachmentSpec.model_validate(entry.attachments) if entry.attachments else None
        )
    except ValidationError as exc:
        problems += _where("attachments", exc)
    try:
        writeback = WritebackSpec.model_validate(entry.writeback) if entry.writeback else None
    except ValidationError as exc:
        problems += _where("writeback", exc)
    if problems:
        prefix = f"{source}: " if source else ""
        raise FatalError(
            "\n".join(f"{prefix}flow {entry.id!r} {p}" for p in problems), code="config"
        )
    return FollowupSpec(
        flow=entry.id,
        app=str(entry.dingtalk.get("app", "")),
        form_id=str(entry.target.get("form_id", "")),
        number_field=str(entry.target.get("number_field") or "FBillNo"),
        attachments=attachments,
        writeback=writeback,
    )


def _where(section: str, exc: ValidationError) -> list[str]:
    """``attachments.max_bytes: <what>`` per problem."""
    return [
        f"{'.'.join([section, *(str(p) for p in err['loc'])])}: {err['msg']}"
        for err in exc.errors()
    ]


def refusal(spec: AttachmentSpec, file: FileRef) -> tuple[str, str] | None:
    """Why ``file`` cannot go along, in plain words (type, message), or None."""
    kind = (file.file_type or file.file_name.rsplit(".", 1)[-1]).lower().lstrip(".")
    if spec.file_types is not None and kind not in spec.file_types:
        return "attachment_type", (
            f"file {file.file_name!r} is of type {kind!r}; the flow takes "
            f"{', '.join(spec.file_types)}: attach it in Kingdee by hand, or add the type to "
            "attachments.file_types and replay"
        )
    if spec.max_bytes is not None and file.file_size > spec.max_bytes:
        return "attachment_too_large", (
            f"file {file.file_name!r} is {file.file_size / 1e6:.1f} MB, over the flow's limit "
            f"of {spec.max_bytes / 1e6:.1f} MB (attachments.max_bytes): attach it in Kingdee by "
            "hand, or raise the limit and replay"
        )
    return None


def _files(value: Any) -> list[FileRef]:
    try:
        items = orjson.loads(value) if isinstance(value, str) else value
    except orjson.JSONDecodeError:
        return []
    return [
        FileRef(
            file_id=str(item["fileId"]),
            file_name=str(item.get("fileName") or item["fileId"]),
            file_size=int(item.get("fileSize") or 0),
            file_type=str(item.get("fileType") or ""),
            space_id=str(item.get("spaceId") or ""),
        )
        for item in (items if isinstance(items, list) else [])
        if isinstance(item, dict) and item.get("fileId")
    ]


def _may_name(table: Any, wanted: set[str]) -> bool:
    """Whether a ``TableField`` value can hold a cell named one of ``wanted``: its JSON text
    spells the name (or escapes characters, when only decoding tells). Most tables hold no
    files; this spares decoding them a second time (the mapping decodes the rows it reads)."""
    if not isinstance(table, str):
        return False
    return "\\u" in table or any(name in table for name in wanted)


def files_in_form(values: Any, components: list[str]) -> list[FileRef]:
    """The files of the named ``DDAttachment`` components (by id or label), also inside
    ``TableField`` rows (dingtalk.md §9.3: scan recursively), in form order, each once."""
    wanted = set(components)
    out: list[FileRef] = []
    for comp in values if isinstance(values, list) else []:
        if not isinstance(comp, dict):
            continue
        kind = comp.get("component_type")
        if kind == "DDAttachment":
            if {comp.get("id"), comp.get("name")} & wanted:
                out.extend(_files(comp.get("value")))
        elif kind == "TableField" and _may_name(comp.get("value"), wanted):
            try:
                rows = orjson.loads(comp["value"])
            except orjson.JSONDecodeError:
                continue
            for row in rows if isinstance(rows, list) else []:
                for cell in row.get("rowValue", []) if isinstance(row, dict) else []:
                    if isinstance(cell, dict) and {cell.get("key"), cell.get("label")} & wanted:
                        out.extend(_files(cell.get("value")))
    seen: set[str] = set()
    return [f for f in out if not (f.file_id in seen or seen.add(f.file_id))]  # type: ignore[func-returns-value]
