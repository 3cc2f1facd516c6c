"""Write-back (issue #18): one comment on the DingTalk approval per approval and outcome, and/or
one work notification to the applicant (``writeback.notify``: comment | notification | both).

The comment POST is not idempotent (dingtalk.md §9.4.1), so each one is bracketed by two
records on the compacted ``writeback.log`` topic, keyed ``<process_instance_id>:<outcome>``:
``pending`` (acknowledged by the broker before the POST) and ``done`` after it. At start the log
is read to its end. A key that is ``done`` is never posted again; a key left ``pending`` by a
killed process is checked first: the approval is fetched (one ``get``) and the comment is posted
only if no ``ADD_REMARK`` record carries its text. So a comment is written exactly once across
restarts, replays and redeliveries of ``bills.result``.

A work notification (``topapi/message/corpconversation/asyncsend_v2``, from the app's
``agent_id``) has its own key, ``<process_instance_id>:<outcome>:notification``, and the same
marks. It cannot be read back, so one left ``pending`` by a kill is sent again: DingTalk itself
delivers the same content to the same employee at most once a day (its documented limit), which
covers a restart within the day. Both channels count in the app's month (``count_call``).

A comment DingTalk refuses is marked ``failed`` and returned to the caller, which dead-letters it
(``dlq.extractor``, replayable onto ``writeback.requests``, see :func:`refusal_message`). A
``failed`` key is not posted again from ``bills.result``; only a request from
``writeback.requests`` (``again=True``: an operator replayed the dead letter after fixing its
cause) posts it once more, with the text the flow's template gives now.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer

from dingdee_common import codec
from dingdee_common.contracts.v1 import BillOutcome, BillResult, WritebackMark
from dingdee_common.errors import PermanentError, PoisonMessageError
from dingdee_common.followups import Channel, FollowupSpec, WritebackSpec
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
    "present state (审批状态异常; a finished approval may take none, dingtalk.md §9.4.1): "
    "wait until it takes comments, or send a work notification instead (writeback.notify of "
    "flow {flow!r}, restart the extractor)",
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


def refusal_message(
    result: BillResult, refused: PermanentError, user: str | None, channel: Channel = "comment"
) -> str:
    """The dead letter's reason for a refused write-back: what DingTalk said and what to do."""
    pid = result.source.process_instance_id
    code = refused.code or "writeback_refused"
    todo = _REFUSED.get(
        code,
        "fix what DingTalk names (the app's Workflow.Instance.Write permission or AgentId, "
        "the approval, the user)",
    ).format(user=user or "-", flow=result.flow)
    what = "comment" if channel == "comment" else f"work notification to {user or '-'}"
    return (
        f"write-back {what} ({_outcome(result)}) for approval {pid} of flow {result.flow!r} "
        f"refused by DingTalk ({code}): {refused.message}. To fix: {todo}" + _REPLAY.format(pid=pid)
    )


def plain_reason(message: str | None) -> str:
    """The loader's reason, shortened for an applicant (the full text is in the dead letter)."""
    text = (message or "单据被金蝶拒绝").replace("\n", " ").strip()
    return text if len(text) <= 300 else text[:297] + "..."


def _addressed(
    spec: FollowupSpec, wb: WritebackSpec, result: BillResult, outcome: str, channel: Channel
) -> tuple[str | None, str]:
    """Who signs the comment, or receives the notification (the applicant); None: nobody
    known. And the text, from the flow's settings now."""
    user = result.source.originator_userid
    if channel == "comment" and wb.comment_user != "originator":
        user = wb.comment_user
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


def _key(pid: str, outcome: str, channel: Channel) -> str:
    return f"{pid}:{outcome}" if channel == "comment" else f"{pid}:{outcome}:notification"


class Writeback:
    """Sends write-back comments and notifications exactly once (see the module docstring)."""

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
        agents: Mapping[str, int] | None = None,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self.marks = marks
        self._v1 = v1
        self._client = client
        self._metrics = metrics
        self._retry = retry
        self._count = count_call
        self._agents = dict(agents or {})

    async def handle(
        self, spec: FollowupSpec, result: BillResult, *, again: bool = False
    ) -> PermanentError | None:
        """Send what ``result`` calls for on each of the flow's channels; a refusal about this
        approval is returned (the caller dead-letters it; both channels refused: one error
        naming both), outages are waited out. ``again``: a replayed request, which sends a
        ``failed`` key once more (never a ``done`` one)."""
        wb = spec.writeback
        outcome = _outcome(result)
        if wb is None or not wb.enabled or outcome not in wb.outcomes:
            return None
        refused = [
            error
            for channel in wb.channels
            if (error := await self._one(spec, wb, result, outcome, channel, again)) is not None
        ]
        if len(refused) <= 1:
            return refused[0] if refused else None
        return PermanentError(" | ".join(e.message for e in refused), code=refused[0].error_type)

    async def _one(
        self,
        spec: FollowupSpec,
        wb: WritebackSpec,
        result: BillResult,
        outcome: str,
        channel: Channel,
        again: bool,
    ) -> PermanentError | None:
        pid = result.source.process_instance_id
        key = _key(pid, outcome, channel)
        mark = self.marks.get(key)
        if mark is not None and (mark.state == "done" or (mark.state == "failed" and not again)):
            self._metrics.writebacks.labels(spec.flow, outcome, "duplicate", channel).inc()
            return None
        user, text = _addressed(spec, wb, result, outcome, channel)
        sent = _Sent(spec, key, outcome, channel, result, text, user)
        if user is None:
            why = PermanentError("the approval names no originator", code="writeback_no_user")
            return await self._failed(sent, why)
        pending = mark is not None and mark.state == "pending"
        if pending and mark is not None and await self._sent_before(sent, mark.text):
            await self._mark(sent, "done", mark.text)
            self._metrics.writebacks.labels(spec.flow, outcome, "duplicate", channel).inc()
            return None
        await self._mark(sent, "pending", text)
        try:
            await retry_until_ok(lambda: self._deliver(sent, user), self._retry)
        except PermanentError as exc:
            return await self._failed(sent, exc)
        await self._mark(sent, "done", text)
        self._metrics.writebacks.labels(spec.flow, outcome, "posted", channel).inc()
        log.info("writeback.posted", flow=spec.flow, key=key, channel=channel)
        return None

    async def _deliver(self, sent: _Sent, user: str) -> None:
        app = sent.spec.app
        pid = sent.result.source.process_instance_id
        if sent.channel == "comment":
            self._count(app)
            await self._v1.comment(app, pid, sent.text, user)
            return
        agent = self._agents.get(app)
        if agent is None:  # build_followups checks this at start; a guard, not a path
            raise PermanentError(f"app {app!r} has no agent_id", code="writeback_no_agent")
        self._count(app)
        await self._client.notify(app, agent, user, sent.text)

    async def _sent_before(self, sent: _Sent, text: str) -> bool:
        """Whether the approval already carries the comment (a kill between POST and ``done``).

        A work notification cannot be read back: it is sent again, and DingTalk itself drops
        the same content to the same employee within a day (its documented limit)."""
        if sent.channel != "comment":
            return False
        app, pid = sent.spec.app, sent.result.source.process_instance_id

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

    async def _failed(self, sent: _Sent, exc: PermanentError) -> PermanentError:
        """Mark the key failed; the refusal, its message saying what to fix and how to replay."""
        await self._mark(sent, "failed", sent.text)
        self._metrics.writebacks.labels(sent.spec.flow, sent.outcome, "failed", sent.channel).inc()
        log.warning("writeback.refused", flow=sent.spec.flow, key=sent.key, code=exc.code)
        message = refusal_message(sent.result, exc, sent.user, sent.channel)
        return PermanentError(message, code=exc.error_type)

    async def _mark(self, sent: _Sent, state: str, text: str) -> None:
        mark = WritebackMark(
            process_instance_id=sent.result.source.process_instance_id,
            outcome=sent.outcome,
            channel=sent.channel,
            state=state,
            text=text,
            bill_key=sent.result.bill_key,
        )
        await self._producer.send_and_wait(
            self._topic, value=codec.encode_model(mark), key=sent.key.encode()
        )
        self.marks[sent.key] = mark
        log.debug("writeback.mark", key=sent.key, state=state)


@dataclass(frozen=True, slots=True)
class _Sent:
    """One write-back on one channel: what, where to, for which result."""

    spec: FollowupSpec
    key: str
    outcome: str
    channel: Channel
    result: BillResult
    text: str
    user: str | None
