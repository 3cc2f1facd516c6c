"""The error taxonomy (DESIGN §4) and the one classifier that decides retry, DLQ or crash.

Library exceptions are translated into these classes at the adapter boundary only (the DingTalk and
Kingdee clients, the message decoders). Everything else reasons in these terms.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass

__all__ = [
    "BackpressureError",
    "Decision",
    "DingdeeError",
    "ErrorClass",
    "FatalError",
    "PermanentError",
    "PoisonMessageError",
    "TransientError",
    "Verdict",
    "classify",
]


class ErrorClass(enum.StrEnum):
    """Values of the ``dlq-error-class`` header."""

    PERMANENT = "permanent"
    POISON = "poison"
    EXHAUSTED = "exhausted"


class DingdeeError(Exception):
    """Root of every error dingdee raises on purpose."""

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code

    @property
    def error_type(self) -> str:
        """Short, stable name for the ``dlq-error-type`` header and metric labels."""
        return self.code or type(self).__name__

    def __str__(self) -> str:
        parts = [self.message]
        if self.field:
            parts.append(f"field={self.field}")
        if self.code:
            parts.append(f"code={self.code}")
        return " ".join(parts)


class TransientError(DingdeeError):
    """Timeouts, 5xx, throttling, session loss: retry in place, honouring ``retry_after``."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        field: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, field=field, code=code)
        self.retry_after = retry_after


class BackpressureError(TransientError):
    """The destination as a whole is failing (down, frozen, busy): not any record's fault.

    A sink raises it instead of giving records an outcome, like quix-streams'
    ``SinkBackpressureError(retry_after)``: the consumer pauses its partitions, keeps the records
    it holds and waits for the destination as long as it takes. Never a dead letter, and never
    counted by the flood guard.
    """


class PermanentError(DingdeeError):
    """The downstream (or the mapping) rejected *this record* for its data: dead-letter at once."""


class PoisonMessageError(DingdeeError):
    """The bytes cannot be decoded or break the message contract: dead-letter at once."""


class FatalError(DingdeeError):
    """Bad config, rejected credentials, broker gone past its budget: exit non-zero.

    The message must name the setting to fix.
    """


class Decision(enum.Enum):
    """What a consumer does with a failed record."""

    RETRY = "retry"
    DEAD_LETTER = "dead_letter"
    CRASH = "crash"


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Decision
    error_class: ErrorClass | None
    error_type: str
    message: str


def classify(exc: BaseException) -> Verdict:
    """The one place that decides retry, dead-letter or crash for any exception."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, TransientError):
        return Verdict(Decision.RETRY, None, exc.error_type, message)
    if isinstance(exc, PoisonMessageError):
        return Verdict(Decision.DEAD_LETTER, ErrorClass.POISON, exc.error_type, message)
    if isinstance(exc, PermanentError):
        return Verdict(Decision.DEAD_LETTER, ErrorClass.PERMANENT, exc.error_type, message)
    if isinstance(exc, FatalError):
        return Verdict(Decision.CRASH, None, exc.error_type, message)
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, ConnectionError, OSError)):
        return Verdict(Decision.RETRY, None, type(exc).__name__, message)
    # Anything unexpected is a bug in our code for this record: crash-looping would block the
    # partition forever, so it is dead-lettered as poison with its type for a human to look at.
    return Verdict(Decision.DEAD_LETTER, ErrorClass.POISON, type(exc).__name__, message)
