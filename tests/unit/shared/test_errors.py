"""The one classifier decides retry, dead-letter or crash for every exception."""

from __future__ import annotations

import pytest

from dingdee_common.errors import (
    BackpressureError,
    Decision,
    ErrorClass,
    FatalError,
    PermanentError,
    PoisonMessageError,
    RetryExhaustedError,
    TransientError,
    classify,
)


class TestClassify:
    @pytest.mark.parametrize(
        ("exc", "decision", "error_class"),
        [
            (TransientError("busy", retry_after=1.0), Decision.RETRY, None),
            (BackpressureError("Kingdee down"), Decision.PAUSE, None),
            (
                RetryExhaustedError(TransientError("busy"), attempts=5),
                Decision.DEAD_LETTER,
                ErrorClass.EXHAUSTED,
            ),
            (TimeoutError("read timed out"), Decision.RETRY, None),
            (ConnectionResetError("reset"), Decision.RETRY, None),
            (
                PermanentError("bad amount", field="FAmount"),
                Decision.DEAD_LETTER,
                ErrorClass.PERMANENT,
            ),
            (PoisonMessageError("not json"), Decision.DEAD_LETTER, ErrorClass.POISON),
            (FatalError("set DINGDEE_KINGDEE__APP_ID"), Decision.CRASH, None),
            (KeyError("surprise"), Decision.DEAD_LETTER, ErrorClass.POISON),
        ],
    )
    def test_each_branch(
        self, exc: BaseException, decision: Decision, error_class: ErrorClass | None
    ) -> None:
        verdict = classify(exc)
        assert verdict.decision is decision
        assert verdict.error_class is error_class

    def test_error_type_prefers_the_code(self) -> None:
        assert classify(PermanentError("x", code="mapping")).error_type == "mapping"
        assert classify(PermanentError("x")).error_type == "PermanentError"

    def test_str_reads_like_a_log_line(self) -> None:
        exc = PermanentError("明细第2行 金额 '12,3a' is not a number", field="FEntity[1].FAmount")
        assert str(exc) == "明细第2行 金额 '12,3a' is not a number field=FEntity[1].FAmount"
