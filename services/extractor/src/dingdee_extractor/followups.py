"""The extractor's follow-ups of a saved bill (issue #18, DESIGN §11 "Attachments and write-back").

One consumer (group ``<group_id>-followups``) reads ``bills.result``, ``attachments.refresh``,
``writeback.requests`` and ``dlq.transformer``:

* a result of a flow with ``writeback`` → :class:`~dingdee_extractor.writeback.Writeback`; so
  is a ``permanent`` transformer dead letter (the approval could not be mapped: outcome
  ``dead_lettered``, the transformer's reason);
* a saved (or already existing) bill of a flow with ``attachments`` → one
  ``attachments.work`` item per file of ``SourceRef.files``: a fresh download URL, or, for a
  file the flow refuses (type, size) or DingTalk will not hand out (``userNotExist``: the
  originator has left), the reason in plain words — the loader dead-letters such an item, and
  a replay of it comes back here as a refresh request, checked again;
* a refresh request (the loader found the URL expired) → a new work item for the same file;
* a write-back request (a replayed write-back dead letter) → that write-back once more, and
  nothing else (no attachment work, no bill).

A write-back DingTalk refuses becomes a dead letter on ``dlq.extractor`` whose value is the
``BillResult`` and whose original topic is ``writeback.requests`` (header
``dingdee-writeback-cause`` names the record that caused it), with what to fix in its reason:
``dingdee dlq replay`` puts it on ``writeback.requests`` and the comment is posted once.

DingTalk calls pace through the app's token bucket and are counted in the month's usage under
the checkpoint key ``followups:<app>`` (``dingdee quota status``). An outage of DingTalk holds
the consumer (nothing committed, retried with backoff for as long as it takes); offsets are
committed only after every message a record caused was acknowledged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from dingdee_common import codec
from dingdee_common.checkpoints import latest_checkpoints
from dingdee_common.contracts.v1 import (
    ApprovalSnapshot,
    AttachmentRefresh,
    AttachmentWork,
    BillOutcome,
    BillResult,
    Checkpoint,
    FileRef,
    SourceRef,
    utcnow,
)
from dingdee_common.errors import (
    ErrorClass,
    FatalError,
    PermanentError,
    PoisonMessageError,
    TransientError,
)
from dingdee_common.flows import load_flows
from dingdee_common.followups import AttachmentSpec, FollowupSpec, followup_of, refusal
from dingdee_common.kafka import headers as hdr
from dingdee_common.kafka.clients import make_consumer, until_broker_answers
from dingdee_common.kafka.dlq import (
    ERROR_CLASS,
    ERROR_MESSAGE,
    DeadLetterPublisher,
    SourceRecord,
)
from dingdee_common.kafka.topics import Topics
from dingdee_common.observability.followups import FollowupMetrics
from dingdee_common.observability.logging import get_logger
from dingdee_common.quota import count_call
from dingdee_common.retry import retry_until_ok
from dingdee_extractor.dingtalk.client import DingTalkClient
from dingdee_extractor.dingtalk.v1 import V1Client
from dingdee_extractor.metrics import ExtractorMetrics
from dingdee_extractor.pending import PendingFollowups
from dingdee_extractor.settings import ExtractorSettings
from dingdee_extractor.writeback import Writeback, load_marks

__all__ = ["Followups", "build_followups"]

log = get_logger(__name__)
_V1 = frozenset({1})
_CAUSE = "dingdee-writeback-cause"
_REFUSED_BY_DINGTALK = {
    "userNotExist": "the approval's originator has left the organisation, so DingTalk no longer "
    "hands out its files (dingtalk.md §9.3.1): attach the file in Kingdee by hand",
    "invalidFileId": "DingTalk does not know this file id any more (deleted from the approval?)",
    "noPermission": "DingTalk refuses this file to the app (noPermission)",
}


def load_specs(settings: ExtractorSettings) -> dict[str, FollowupSpec]:
    """The follow-ups of every enabled flow that declares some.

    Raises:
        FatalError: a flow sends work notifications from an app without ``agent_id``.
    """
    flows = load_flows(settings.flows_file)
    specs = (followup_of(entry, str(settings.flows_file)) for entry in flows.enabled())
    out = {spec.flow: spec for spec in specs if spec is not None}
    for spec in out.values():
        notifies = spec.writeback is not None and "notification" in spec.writeback.channels
        app = settings.dingtalk.apps.get(spec.app)
        if notifies and (app is None or app.agent_id is None):
            raise FatalError(
                f"flow {spec.flow!r} sends work notifications (writeback.notify) from app "
                f"{spec.app!r}, which has no agent_id: set it in DINGDEE_DINGTALK__APPS "
                "(the app's AgentId in the DingTalk developer console)",
                code="config",
            )
    return out


async def build_followups(
    settings: ExtractorSettings,
    producer: AIOKafkaProducer,
    client: DingTalkClient,
    metrics: ExtractorMetrics,
    behind: Callable[[str, str | None], None],
) -> Followups | None:
    """The follow-up worker, or None when no flow declares attachments or a write-back.

    ``behind``: told when the oldest pending follow-up waits too long (``OutageWatch.behind``).
    """
    specs = load_specs(settings)
    if not specs:
        return None
    topics = Topics(settings.kafka.topic_prefix)
    v1 = V1Client(settings.dingtalk, settings.events.base_url, client, metrics)
    marks = await load_marks(settings.kafka, topics.writeback_log)
    usage = {
        k: cp
        for k, cp in (await latest_checkpoints(settings.kafka, topics.checkpoints)).items()
        if k.startswith("followups:")
    }
    pending = PendingFollowups(settings.followups, metrics.followups_oldest, behind)
    return Followups(
        settings, specs, producer, client, v1, metrics.followups, marks, usage, pending
    )


class Followups:
    """Consumes ``bills.result`` and ``attachments.refresh`` (see the module docstring)."""

    def __init__(
        self,
        settings: ExtractorSettings,
        specs: dict[str, FollowupSpec],
        producer: AIOKafkaProducer,
        client: DingTalkClient,
        v1: V1Client,
        metrics: FollowupMetrics,
        marks: dict[str, Any],
        usage: dict[str, Checkpoint],
        pending: PendingFollowups,
    ) -> None:
        self._s = settings
        self.pending = pending
        self.specs = specs
        self._producer = producer
        self._v1 = v1
        self._metrics = metrics
        self._topics = Topics(settings.kafka.topic_prefix)
        self._dlq = DeadLetterPublisher(producer, self._topics, "extractor")
        self._usage = usage
        self._dirty: set[str] = set()
        self.writeback = Writeback(
            producer,
            self._topics.writeback_log,
            marks,
            v1,
            client,
            metrics,
            settings.outage.policy(),
            self._count,
            {n: a.agent_id for n, a in settings.dingtalk.apps.items() if a.agent_id is not None},
        )

    def _count(self, app: str) -> None:
        """One metered DingTalk call of ``app`` in this month's usage (saved after the batch)."""
        key = f"followups:{app}"
        cp = self._usage.get(key) or Checkpoint(flow=key, watermark_ms=0)
        now = int(time.time() * 1000)
        self._usage[key] = cp.model_copy(update={"usage": count_call(cp.usage, app, "get", now)})
        self._dirty.add(key)

    async def _save_usage(self) -> None:
        for key in sorted(self._dirty):
            await self._producer.send_and_wait(
                self._topics.checkpoints,
                value=codec.encode_model(self._usage[key]),
                key=key.encode(),
            )
        self._dirty.clear()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop``; commits after each fetched batch is fully handled."""
        consumer = make_consumer(
            self._s.kafka,
            self._topics.bills_result,
            self._topics.attachments_refresh,
            self._topics.writeback_requests,
            self._topics.dlq("transformer"),
            group_id=f"{self._s.group_id}-followups",
            max_poll_records=50,
        )
        await consumer.start()
        watch = asyncio.create_task(self.pending.watch(stop))
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=500)
                batch = [(tp, r) for tp, records in batches.items() for r in records]
                self.pending.batch([(tp.topic, r) for tp, r in batch])
                for index, (tp, record) in enumerate(batch):
                    self.pending.taking(index)
                    await self._until_handled(tp, record)
                self.pending.done()
                await self._save_usage()
                if batches:
                    try:
                        await consumer.commit()
                    except KafkaError as exc:  # the batch comes again: each step is idempotent
                        log.warning("extractor.followup.commit_failed", error=str(exc)[:300])
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
            await consumer.stop()
            await self._v1.aclose()

    async def _until_handled(self, tp: TopicPartition, record: Any) -> None:
        """Handle one record; a broker that does not answer (or a partition changing leader) is
        waited out and the record handled again: the write-back marks and the loader's alias
        check make a repeat a no-op, never a second comment or file."""

        async def handle() -> None:
            await self._handle(tp, record)

        def waiting(exc: TransientError, attempt: int, delay: float) -> None:
            log.warning(
                "extractor.followup.kafka_unavailable",
                attempt=attempt,
                next_in=round(delay, 3),
                error=exc.message,
            )

        await until_broker_answers(handle, "a follow-up record", self._s.outage.policy(), waiting)

    async def _handle(self, tp: TopicPartition, record: Any) -> None:
        source = SourceRecord(
            tp.topic, tp.partition, record.offset, record.key, record.value, tuple(record.headers)
        )
        try:
            if tp.topic == self._topics.dlq("transformer"):
                await self._mapping_failure(source)
            elif tp.topic == self._topics.attachments_refresh:
                refresh = codec.decode_model(
                    record.value, AttachmentRefresh, supported_versions=_V1
                )
                await self._refresh(refresh, source)
            elif tp.topic == self._topics.writeback_requests:
                result = codec.decode_model(record.value, BillResult, supported_versions=_V1)
                await self._writeback(result, source, again=True)
            else:
                result = codec.decode_model(record.value, BillResult, supported_versions=_V1)
                await self._result(result, source)
        except PoisonMessageError as exc:
            log.warning("extractor.followup.poison", topic=tp.topic, offset=record.offset)
            await self._dlq.publish(
                source, error_class=ErrorClass.POISON, error_type=exc.error_type, message=str(exc)
            )

    async def _result(self, result: BillResult, source: SourceRecord) -> None:
        spec = self.specs.get(result.flow)
        if spec is None:
            return
        await self._writeback(result, source)
        saved = result.outcome in (BillOutcome.SAVED, BillOutcome.ALREADY_EXISTS)
        if spec.attachments is None or not saved or not result.source.files:
            return
        for file in result.source.files:
            work = AttachmentWork(
                flow=spec.flow,
                bill_key=result.bill_key,
                form_id=result.form_id,
                number_field=spec.number_field,
                kingdee_id=result.kingdee_id,
                number=result.number or result.bill_key,
                app=spec.app,
                process_instance_id=result.source.process_instance_id,
                file=file,
            )
            await self._publish(spec, spec.attachments, work, source.headers)

    async def _writeback(
        self, result: BillResult, source: SourceRecord, *, again: bool = False
    ) -> None:
        """The write-back ``result`` calls for; a refusal becomes a replayable dead letter."""
        spec = self.specs.get(result.flow)
        if spec is None:
            log.warning("extractor.followup.writeback_unknown_flow", flow=result.flow)
            return
        refused = await self.writeback.handle(spec, result, again=again)
        if refused is None:
            return
        await self._dlq.publish(
            self._request(result, source),
            error_class=ErrorClass.PERMANENT,
            error_type=refused.error_type,
            message=refused.message,
        )

    def _request(self, result: BillResult, source: SourceRecord) -> SourceRecord:
        """The dead letter's record: a write-back request whose replay runs it once more."""
        topic = self._topics.writeback_requests
        cause = f"{source.topic}/{source.partition}/{source.offset}"
        carry = hdr.trace_headers(list(source.headers))
        headers = [*hdr.build(result.flow, result.source.process_instance_id, carry=carry)]
        headers.append((_CAUSE, cause.encode()))
        if source.topic == topic:  # a replayed request refused again keeps its replay count
            headers = list(source.headers)
        return SourceRecord(
            topic,
            source.partition,
            source.offset,
            result.source.process_instance_id.encode(),
            codec.encode_model(result),
            tuple(headers),
        )

    async def _mapping_failure(self, source: SourceRecord) -> None:
        """A transformer dead letter (the approval could not be mapped): its write-back, with
        the transformer's reason; poison and exhausted ones say nothing to an applicant."""
        if hdr.get(source.headers, ERROR_CLASS) != ErrorClass.PERMANENT.value:
            return
        try:
            snap = codec.decode_model(source.value, ApprovalSnapshot, supported_versions=_V1)
        except PoisonMessageError:
            return
        spec = self.specs.get(snap.flow)
        if spec is None or spec.writeback is None:
            return
        userid = snap.instance.get("originator_userid")
        result = BillResult(
            flow=snap.flow,
            bill_key=snap.business_id or snap.process_instance_id,
            form_id=spec.form_id,
            outcome=BillOutcome.FAILED,
            message=hdr.get(source.headers, ERROR_MESSAGE),
            source=SourceRef(
                process_instance_id=snap.process_instance_id,
                business_id=snap.business_id,
                originator_userid=str(userid) if userid else None,
            ),
        )
        await self._result(result, source)

    async def _refresh(self, refresh: AttachmentRefresh, source: SourceRecord) -> None:
        spec = self.specs.get(refresh.work.flow)
        if spec is None or spec.attachments is None:
            log.warning("extractor.followup.refresh_unknown_flow", flow=refresh.work.flow)
            return
        log.info(
            "extractor.followup.refresh",
            bill_key=refresh.work.bill_key,
            file_id=refresh.work.file.file_id,
            reason=refresh.reason,
        )
        work = refresh.work.model_copy(update={"url": None, "refused": None, "refused_type": None})
        await self._publish(spec, spec.attachments, work, source.headers)

    async def _publish(
        self,
        spec: FollowupSpec,
        attachments: AttachmentSpec,
        work: AttachmentWork,
        carry: tuple[tuple[str, bytes], ...],
    ) -> None:
        """Resolve the file's URL (or the reason not to) and publish the work item."""
        work = await self._resolved(spec, attachments, work)
        self._metrics.urls.labels(spec.flow, "refused" if work.refused else "issued").inc()
        headers = hdr.build(
            spec.flow, work.process_instance_id, carry=hdr.trace_headers(list(carry))
        )
        await self._producer.send_and_wait(
            self._topics.attachments_work,
            value=codec.encode_model(work),
            key=work.bill_key.encode(),
            headers=headers,
        )

    async def _resolved(
        self, spec: FollowupSpec, attachments: AttachmentSpec, work: AttachmentWork
    ) -> AttachmentWork:
        now = {"issued_at": utcnow()}
        why = refusal(attachments, work.file)
        if why is not None:
            return work.model_copy(update={**now, "refused_type": why[0], "refused": why[1]})
        file: FileRef = work.file

        async def resolve() -> tuple[str, int]:
            self._count(spec.app)
            return await self._v1.download_url(spec.app, work.process_instance_id, file.file_id)

        try:
            url, expires = await retry_until_ok(resolve, self._s.outage.policy())
        except PermanentError as exc:
            code = exc.code or "download_refused"
            reason = _REFUSED_BY_DINGTALK.get(code, f"DingTalk refused the file: {exc.message}")
            text = f"file {file.file_name!r} of approval {work.process_instance_id}: {reason}"
            return work.model_copy(update={**now, "refused_type": code, "refused": text})
        return work.model_copy(update={**now, "url": url, "url_expires_ms": expires})
