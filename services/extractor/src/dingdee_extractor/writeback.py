"""Write-back (issue #18): one comment on the DingTalk approval per approval and outcome.

The comment POST is not idempotent (dingtalk.md §9.4.1), so each one is bracketed by two
records on the compacted ``writeback.log`` topic, keyed ``<process_instance_id>:<outcome>``:
``pending`` (acknowledged by the broker before the POST) and ``done`` after it. At start the log
is read to its end. A key that is ``done`` is never posted again; a key left ``pending`` by a
killed process is checked first: the approval is fetched (one ``get``) and the comment is posted
only if no ``ADD_REMARK`` record carries its text. So a comment is written exactly once across
restarts, replays and redeliveries of ``bills.result``.

A comment DingTalk refuses is marked ``failed`` and returned to the caller, which dead-letters it
(``dlq.extractor``, replayable onto ``writeback.requests``, see :func:`refusal_message`). A
``failed`` key is not posted again from ``bills.result``; only a request from
``writeback.requests`` (``again=True``: an operator replayed the dead letter after fixing its
cause) posts it once more, with the text the flow's template gives now.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer

from dingdee_common import codec
from dingdee_common.contracts.v1 import BillOutcome, BillResult, WritebackMark
from dingdee_common.errors import PermanentError, PoisonMessageError
from dingdee_common.followups import FollowupSpec, WritebackSpec
from dingdee_common.kafka.reading import read_topic
from dingdee_common.observability.followups import FollowupMetrics
from dingdee_common.observability.logging import get_logger
from dingdee_common.retry import retry_until_ok
from dingdee_common.settings import KafkaSettings, RetrySettings
from dingdee_extractor.dingtalk.client import DingTalkClient
from dingdee_extractor.dingtalk.v1 import V1Client

__all__ = ["Writeback", "load_marks", "plain_reason", "refusal_message"]

log = get_logger(__name__)
_V1 = frozenset({1})
_REPLAY = (
    "; then replay it: dingdee dlq replay --stage extractor --key {pid} --execute "
    "(the comment is posted once, no bill is touched)"
)
# dingtalk.md §9.4.1 (lines 1049–1051): the comment API's refusals, in words an operator acts on
_REFUSED = {
    "userNotExist": "DingTalk does not know the user signing the comment ({user}: left the "
    "organisation?): set writeback.comment_user of flow {flow!r} to a userid that exists, "
    "restart the extractor",
    "aflowProcessInstNotExist": "DingTalk does not know the approval (deleted?): check it in "
    "DingTalk; if it is gone, drop this dead letter",
    "aflowProcessInstCanNotBeExecuted": "DingTalk refuses comments on the approval in its "
    "present state (审批状态异常): allow comments on finished approvals in the DingTalk admin "
    "console, or wait until the approval can take one",
    "invalidInstanceCommentText": "DingTalk refuses the text: fix writeback.*_text of flow "
    "{flow!r}, restart the extractor",
    "writeback_no_user": "the approval names no originator to sign the comment: set "
    "writeback.comment_user of flow {flow!r} to a userid, restart the extractor",
}


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


def refusal_message(result: BillResult, refused: PermanentError, user: str | None) -> str:
    """The dead letter's reason for a refused write-back: what DingTalk said and what to do."""
    pid = result.source.process_instance_id
    code = refused.code or "writeback_refused"
    todo = _REFUSED.get(
        code,
        "fix what DingTalk names (the app's Workflow.Instance.Write "
        "permission, the approval, the signer)",
    ).format(user=user or "-", flow=result.flow)
    return (
        f"write-back comment ({_outcome(result)}) for approval {pid} of flow {result.flow!r} "
        f"refused by DingTalk ({code}): {refused.message}. To fix: {todo}" + _REPLAY.format(pid=pid)
    )


def plain_reason(message: str | None) -> str:
    """The loader's reason, shortened for an applicant (the full text is in the dead letter)."""
    text = (message or "单据被金蝶拒绝").replace("\n", " ").strip()
    return text if len(text) <= 300 else text[:297] + "..."


def _comment(
    spec: FollowupSpec, wb: WritebackSpec, result: BillResult, outcome: str
) -> tuple[str | None, str]:
    """Who signs the comment (None: nobody known) and its text, from the flow's settings now."""
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
    return user, text


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

    async def handle(
        self, spec: FollowupSpec, result: BillResult, *, again: bool = False
    ) -> PermanentError | None:
        """Write the comment ``result`` calls for, if any; a refusal about this approval is
        returned (the caller dead-letters it), outages are waited out. ``again``: a replayed
        request, which posts a ``failed`` key once more (never a ``done`` one)."""
        wb = spec.writeback
        outcome = _outcome(result)
        if wb is None or not wb.enabled or outcome not in wb.outcomes:
            return None
        pid = result.source.process_instance_id
        key = f"{pid}:{outcome}"
        mark = self.marks.get(key)
        if mark is not None and (mark.state == "done" or (mark.state == "failed" and not again)):
            self._metrics.writebacks.labels(spec.flow, outcome, "duplicate").inc()
            return None
        user, text = _comment(spec, wb, result, outcome)
        if user is None:
            why = PermanentError("the approval names no originator", code="writeback_no_user")
            return await self._failed(spec, key, outcome, result, text, why, user)
        pending = mark is not None and mark.state == "pending"
        if pending and mark is not None and await self._posted_before(spec.app, pid, mark.text):
            await self._mark(key, result, outcome, "done", mark.text)
            self._metrics.writebacks.labels(spec.flow, outcome, "duplicate").inc()
            return None
        await self._mark(key, result, outcome, "pending", text)
        try:
            await retry_until_ok(lambda: self._post(spec.app, pid, text, user), self._retry)
        except PermanentError as exc:
            return await self._failed(spec, key, outcome, result, text, exc, user)
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
        exc: PermanentError,
        user: str | None,
    ) -> PermanentError:
        """Mark ``key`` failed; the refusal, its message saying what to fix and how to replay."""
        await self._mark(key, result, outcome, "failed", text)
        self._metrics.writebacks.labels(spec.flow, outcome, "failed").inc()
        log.warning("writeback.refused", flow=spec.flow, key=key, code=exc.code)
        return PermanentError(refusal_message(result, exc, user), code=exc.error_type)

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
