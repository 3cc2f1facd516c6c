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
    "RetryExhaustedError",
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


class RetryExhaustedError(TransientError):
    """A transient error outlived its retry budget: the record becomes ``exhausted``."""

    def __init__(self, last: TransientError, attempts: int) -> None:
        super().__init__(
            f"gave up after {attempts} attempts: {last}", code=last.error_type, field=last.field
        )
        self.last = last
        self.attempts = attempts


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
    PAUSE = "pause"  # back-pressure: hold the records, pause consuming, probe the destination
    DEAD_LETTER = "dead_letter"
    CRASH = "crash"


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Decision
    error_class: ErrorClass | None
    error_type: str
    message: str


# The taxonomy's one table, most specific first: exception types → decision, dead-letter class.
_ACTIONS: tuple[tuple[tuple[type[BaseException], ...], Decision, ErrorClass | None], ...] = (
    ((RetryExhaustedError,), Decision.DEAD_LETTER, ErrorClass.EXHAUSTED),
    ((BackpressureError,), Decision.PAUSE, None),
    ((TransientError,), Decision.RETRY, None),
    ((PoisonMessageError,), Decision.DEAD_LETTER, ErrorClass.POISON),
    ((PermanentError,), Decision.DEAD_LETTER, ErrorClass.PERMANENT),
    ((FatalError,), Decision.CRASH, None),
    ((TimeoutError, asyncio.TimeoutError, ConnectionError, OSError), Decision.RETRY, None),
)


def classify(exc: BaseException) -> Verdict:
    """The one place that decides retry, pause, dead-letter or crash for any exception.

    Each service maps the decision to its action in one place (the transformer's
    ``pipeline._dead_letter_verdict``, the loader's ``KingdeeSink._failed``, the extractor's
    ``FlowPoller._fetch_one``): retry in place, pause on back-pressure, dead-letter with the
    verdict's error class, or crash.
    """
    message = str(exc) or type(exc).__name__
    for types, decision, error_class in _ACTIONS:
        if isinstance(exc, types):
            error_type = exc.error_type if isinstance(exc, DingdeeError) else type(exc).__name__
            return Verdict(decision, error_class, error_type, message)
    # Anything unexpected is a bug in our code for this record: crash-looping would block the
    # partition forever, so it is dead-lettered as poison with its type for a human to look at.
    return Verdict(Decision.DEAD_LETTER, ErrorClass.POISON, type(exc).__name__, message)
