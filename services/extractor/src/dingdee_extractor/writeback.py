"""Write-back (issue #18): one comment on the DingTalk approval per approval and outcome.

The comment POST is not idempotent (dingtalk.md §9.4.1), so each one is bracketed by two
records on the compacted ``writeback.log`` topic, keyed ``<process_instance_id>:<outcome>``:
``pending`` (acknowledged by the broker before the POST) and ``done`` after it. At start the log
is read to its end. A key that is ``done`` (or ``failed``) is never posted again; a key left
``pending`` by a killed process is checked first: the approval is fetched (one ``get``) and the
comment is posted only if no ``ADD_REMARK`` record carries its text. So a comment is written
exactly once across restarts, replays and redeliveries of ``bills.result``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer

from dingdee_common import codec
from dingdee_common.contracts.v1 import BillOutcome, BillResult, WritebackMark
from dingdee_common.errors import PermanentError, PoisonMessageError
from dingdee_common.followups import FollowupSpec
from dingdee_common.kafka.reading import read_topic
from dingdee_common.observability.followups import FollowupMetrics
from dingdee_common.observability.logging import get_logger
from dingdee_common.retry import retry_until_ok
from dingdee_common.settings import KafkaSettings, RetrySettings
from dingdee_extractor.dingtalk.client import DingTalkClient
from dingdee_extractor.dingtalk.v1 import V1Client

__all__ = ["Writeback", "load_marks", "plain_reason"]

log = get_logger(__name__)
_V1 = frozenset({1})


async def load_marks(kafka: KafkaSettings, topic: str) -> dict[str, WritebackMark]:
    """The last mark of every key of ``writeback.log``."""
    marks: dict[str, WritebackMark] = {}
    for record in await read_topic(kafka, topic):
        if record.key is None or record.value is None:
            continue
        try:
            marks[record.key.decode()] = codec.decode_model(
                record.value, WritebackMark, supported_versions=_V1
            )
        except PoisonMessageError as exc:
            log.error("writeback.mark.unreadable", key=record.key.decode(), error=str(exc))
    return marks


def _outcome(result: BillResult) -> str:
    """The write-back outcome of a bill: ``saved`` (also when it existed) or ``dead_lettered``."""
    saved = result.outcome in (BillOutcome.SAVED, BillOutcome.ALREADY_EXISTS)
    return "saved" if saved else "dead_lettered"


def plain_reason(message: str | None) -> str:
    """The loader's reason, shortened for an applicant (the full text is in the dead letter)."""
    text = (message or "单据被金蝶拒绝").replace("\n", " ").strip()
    return text if len(text) <= 300 else text[:297] + "..."


class Writeback:
    """Posts write-back comments exactly once (see the module docstring)."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        marks: dict[str, WritebackMark],
        v1: V1Client,
        client: DingTalkClient,
        metrics: FollowupMetrics,
        retry: RetrySettings,
        count_call: Callable[[str], None],
    ) -> None:
        self._producer = producer
        self._topic = topic
        self.marks = marks
        self._v1 = v1
        self._client = client
        self._metrics = metrics
        self._retry = retry
        self._count = count_call

    async def handle(self, spec: FollowupSpec, result: BillResult) -> PermanentError | None:
        """Write the comment ``result`` calls for, if any; a refusal about this approval is
        returned (the caller dead-letters it), outages are waited out."""
        wb = spec.writeback
        outcome = _outcome(result)
        if wb is None or not wb.enabled or outcome not in wb.outcomes:
            return None
        pid = result.source.process_instance_id
        key = f"{pid}:{outcome}"
        mark = self.marks.get(key)
        if mark is not None and mark.state in ("done", "failed"):
            self._metrics.writebacks.labels(spec.flow, outcome, "duplicate").inc()
            return None
        user = result.source.originator_userid if wb.comment_user == "originator" else None
        user = user or (wb.comment_user if wb.comment_user != "originator" else None)
        text = wb.text(
            outcome,
            form_name=spec.form_name,
            number=result.number or result.bill_key,
            bill_key=result.bill_key,
            reason=plain_reason(result.message),
            business_id=result.source.business_id or "",
            flow=spec.flow,
        )
        if user is None:
            return await self._failed(spec, key, outcome, result, text, "no originator userid")
        if mark is not None and await self._posted_before(spec.app, pid, mark.text):
            await self._mark(key, result, outcome, "done", mark.text)
            self._metrics.writebacks.labels(spec.flow, outcome, "duplicate").inc()
            return None
        await self._mark(key, result, outcome, "pending", text)
        try:
            await retry_until_ok(lambda: self._post(spec.app, pid, text, user), self._retry)
        except PermanentError as exc:
            return await self._failed(spec, key, outcome, result, text, exc.message, exc)
        await self._mark(key, result, outcome, "done", text)
        self._metrics.writebacks.labels(spec.flow, outcome, "posted").inc()
        log.info("writeback.posted", flow=spec.flow, instance=pid, outcome=outcome)
        return None

    async def _post(self, app: str, pid: str, text: str, user: str) -> None:
        self._count(app)
        await self._v1.comment(app, pid, text, user)

    async def _posted_before(self, app: str, pid: str, text: str) -> bool:
        """Whether the approval already carries the comment (a kill between POST and ``done``)."""

        async def fetch() -> dict[str, Any]:
            self._count(app)
            return await self._client.get(app, pid)

        try:
            instance = await retry_until_ok(fetch, self._retry)
        except PermanentError:
            return False
        return any(
            isinstance(r, dict)
            and r.get("operation_type") == "ADD_REMARK"
            and r.get("remark") == text
            for r in instance.get("operation_records") or []
        )

    async def _failed(
        self,
        spec: FollowupSpec,
        key: str,
        outcome: str,
        result: BillResult,
        text: str,
        why: str,
        exc: PermanentError | None = None,
    ) -> PermanentError:
        await self._mark(key, result, outcome, "failed", text)
        self._metrics.writebacks.labels(spec.flow, outcome, "failed").inc()
        return exc or PermanentError(
            f"write-back for approval {result.source.process_instance_id}: {why}",
            code="writeback_no_user",
        )

    async def _mark(
        self, key: str, result: BillResult, outcome: str, state: str, text: str
    ) -> None:
        mark = WritebackMark(
            process_instance_id=result.source.process_instance_id,
            outcome=outcome,
            state=state,
            text=text,
            bill_key=result.bill_key,
        )
        await self._producer.send_and_wait(
            self._topic, value=codec.encode_model(mark), key=key.encode()
        )
        self.marks[key] = mark
        log.debug("writeback.mark", key=key, state=state)
