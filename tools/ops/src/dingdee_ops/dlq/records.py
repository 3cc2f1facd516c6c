"""Dead letters as read back from ``dlq.<stage>`` and the operator's selection of them (DESIGN §6).

A :class:`DeadLetter` keeps the record's key, value and headers exactly as the broker returned them;
everything else (stage, error class, flow …) is read from the DESIGN §3 headers on demand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dingdee_common.kafka import dlq as dlq_headers
from dingdee_common.kafka import headers as hdr
from dingdee_common.kafka.topics import STAGES

__all__ = [
    "PARKED_AT",
    "REPLAYED_AT",
    "REPLAYED_BY",
    "REPLAYED_FROM",
    "REPLAY_RUN",
    "DeadLetter",
    "Selection",
    "parse_time",
]

REPLAY_RUN = "dlq-replay-run"
REPLAYED_AT = "dlq-replayed-at"
REPLAYED_BY = "dlq-replayed-by"
REPLAYED_FROM = "dlq-replayed-from"
PARKED_AT = "dlq-parked-at"


def parse_time(text: str) -> datetime:
    """An RFC 3339 / ISO 8601 time; a value without zone is taken as UTC.

    Raises:
        ValueError: ``text`` is not an ISO 8601 date or time.
    """
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of a DLQ topic, bytes untouched."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()

    def header(self, name: str) -> str | None:
        """The decoded value of header ``name`` (the last one wins), or ``None``."""
        return hdr.get(self.headers, name)

    @property
    def coordinates(self) -> str:
        """``topic/partition/offset``: where this dead letter lives."""
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def stage(self) -> str:
        return self.header(dlq_headers.STAGE) or self.topic.rsplit(".", 1)[-1]

    @property
    def original_topic(self) -> str | None:
        return self.header(dlq_headers.ORIGINAL_TOPIC)

    @property
    def error_class(self) -> str:
        return self.header(dlq_headers.ERROR_CLASS) or "unknown"

    @property
    def error_type(self) -> str:
        return self.header(dlq_headers.ERROR_TYPE) or "unknown"

    @property
    def error_message(self) -> str:
        return self.header(dlq_headers.ERROR_MESSAGE) or ""

    @property
    def flow(self) -> str:
        return self.header(hdr.FLOW) or "-"

    @property
    def source_id(self) -> str | None:
        return self.header(hdr.SOURCE_ID)

    @property
    def key_text(self) -> str:
        return self.key.decode("utf-8", errors="replace") if self.key is not None else ""

    @property
    def replay_count(self) -> int:
        raw = self.header(dlq_headers.REPLAY_COUNT) or "0"
        return int(raw) if raw.isdigit() else 0

    @property
    def failed_at(self) -> datetime:
        """``dlq-failed-at``; the broker timestamp when the header is missing or unreadable."""
        raw = self.header(dlq_headers.FAILED_AT)
        if raw:
            try:
                return parse_time(raw)
            except ValueError:
                pass
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters an operator means; empty criteria match everything.

    Criteria combine with AND; the values inside one criterion combine with OR.
    """

    stages: tuple[str, ...] = STAGES
    since: datetime | None = None
    until: datetime | None = None
    error_classes: frozenset[str] = frozenset()
    error_types: frozenset[str] = frozenset()
    flows: frozenset[str] = frozenset()
    keys: frozenset[str] = frozenset()
    pattern: str | None = None
    offsets: frozenset[int] = frozenset()
    _regex: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Validate the stages and compile the pattern.

        Raises:
            ValueError: an unknown stage, or a pattern that is not a regular expression.
        """
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown or not self.stages:
            raise ValueError(f"未知阶段 {unknown}；可选 {', '.join(STAGES)}")
        if self.pattern:
            try:
                object.__setattr__(self, "_regex", re.compile(self.pattern, re.IGNORECASE))
            except re.error as exc:
                raise ValueError(f"错误信息匹配模式无效: {exc}") from exc

    def matches(self, letter: DeadLetter) -> bool:
        """True when ``letter`` meets every criterion."""
        checks = (
            letter.stage in self.stages,
            self.since is None or letter.failed_at >= self.since,
            self.until is None or letter.failed_at < self.until,
            not self.error_classes or letter.error_class in self.error_classes,
            not self.error_types or letter.error_type in self.error_types,
            not self.flows or letter.flow in self.flows,
            not self.keys or bool({letter.key_text, letter.source_id} & self.keys),
            self._regex is None or bool(self._regex.search(letter.error_message)),
            not self.offsets or letter.offset in self.offsets,
        )
        return all(checks)

    def describe(self) -> dict[str, Any]:
        """The criteria as plain JSON values, for the audit record and the dry-run report."""
        out: dict[str, Any] = {"stages": list(self.stages)}
        if self.since:
            out["since"] = self.since.isoformat()
        if self.until:
            out["until"] = self.until.isoformat()
        for name in ("error_classes", "error_types", "flows", "keys", "offsets"):
            values = getattr(self, name)
            if values:
                out[name] = sorted(values)
        if self.pattern:
            out["pattern"] = self.pattern
        return out
