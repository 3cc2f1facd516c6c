"""What a Kingdee write or query tells the loader, per package (``DIndex``)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["DUPLICATE_PREFIX", "SESSION_LOST", "RowKind", "RowResult"]

DUPLICATE_PREFIX = "违反字段唯一性要求"
SESSION_LOST = "会话信息已丢失"


class RowKind(enum.StrEnum):
    SAVED = "saved"
    EXISTS = "already_exists"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class RowResult:
    """The outcome of one package of a BatchSave, matched by ``DIndex``."""

    kind: RowKind
    kingdee_id: int | None = None
    number: str | None = None
    message: str | None = None
    field: str | None = None
