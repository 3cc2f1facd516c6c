"""The loader's attachment uploads (issue #18, DESIGN §11 "Attachments and write-back").

Consumes ``attachments.work`` (group ``<group_id>-attachments``), one item at a time, on a lane
taken from the loader's lanes (its Kingdee sessions and concurrency limit). Per item:

1. **Idempotency** (kingdee.md §10.4.1: ``AttachmentUpload`` is not idempotent): every file is
   uploaded with the deterministic ``AliasFileName`` ``dd-<fileId>-<fileName>``; before sending
   a byte, the bill's ``BOS_Attachment`` rows are listed (§10.4.3) and a row with that alias
   means the file is attached already. A kill before the last chunk leaves no row (Kingdee
   creates it on ``IsLast``), so the restarted upload starts over; a kill after it finds the row.
2. **Streaming**: the bytes are read from the DingTalk URL and cut into ``chunk_bytes`` chunks,
   each Base64-encoded piece by piece as it arrives (``filechunks``) and sent as one call
   (``FileId`` from the first answer, ``IsLast`` on the last) without being joined; download and
   encoding start while the bill's attachments are checked and run one chunk ahead of the upload
   (``ReadAhead``), so at most four chunks are in memory, and the bytes never go through Kafka.
3. **Expired URL** (403 from the file host, or less than a minute left): an
   ``attachments.refresh`` request; the extractor answers with a new work item.
4. **Dead letters** (``dlq.loader``, replayable with ``dingdee dlq replay``): an item the
   extractor refused (size, type, departed originator), a 404 file, a Kingdee refusal of the
   upload (``IsSuccess: false`` with a record MsgCode). A replayed refused item asks for a
   refresh instead (the extractor checks it again against the current flow settings).
5. **Outages** of Kingdee or the file host: retried in place with backoff without limit
   (``retry_until_ok``); the item stays uncommitted, so a kill re-runs it.
6. **Rebalances** (another loader joins or leaves the group): before its partitions are given
   up, the item in hand is finished and committed (``_Rebalance``); an item fetched for a
   partition already given up is left to its next owner. A commit the group refuses all the same
   (``CommitFailedError``: the group moved on; ``IllegalStateError``: the partition is gone) is
   logged and the worker goes on: the item is read again after the rebalance and the alias check
   makes the repeat a skip. The process never ends for a rebalance.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from dingdee_common import codec
from dingdee_common.contracts.v1 import AttachmentRefresh, AttachmentResult, AttachmentWork
from dingdee_common.errors import ErrorClass, PermanentError, PoisonMessageError, TransientError
from dingdee_common.kafka import headers as hdr
from dingdee_common.kafka.clients import until_broker_answers
from dingdee_common.kafka.dlq import REPLAY_COUNT, DeadLetterPublisher, SourceRecord
from dingdee_common.kafka.topics import Topics
from dingdee_common.observability.followups import FollowupMetrics
from dingdee_common.observability.logging import get_logger
from dingdee_common.retry import retry_until_ok
from dingdee_common.settings import RetrySettings
from dingdee_loader.filechunks import Chunk, ReadAhead, chunked, send_byte_body
from dingdee_loader.kingdee.client import KingdeeClient, Lane

__all__ = ["AttachmentWorker", "alias_of"]

log = get_logger(__name__)
_V1 = frozenset({1})
_URL_MARGIN_MS = 60_000


def alias_of(work: AttachmentWork) -> str:
    """The deterministic alias that marks a file as attached (idempotency key)."""
    return f"dd-{work.file.file_id}-{work.file.file_name}"[:200]


class _ExpiredError(Exception):
    """The download URL no longer works: ask for a new one."""


@dataclass(frozen=True, slots=True)
class _Done:
    result: str
    attachment_id: int | None = None
    size: int = 0


class AttachmentWorker:
    """Uploads each ``attachments.work`` file to its bill once (see the module docstring)."""

    def __init__(
        self,
        client: KingdeeClient,
        lanes: asyncio.Queue[Lane],
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        topics: Topics,
        metrics: FollowupMetrics,
        retry: RetrySettings,
        chunk_bytes: int,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._client = client
        self._lanes = lanes
        self._consumer = consumer
        self._producer = producer
        self._topics = topics
        self._metrics = metrics
        self._retry = retry
        self._chunk = chunk_bytes
        self._dlq = DeadLetterPublisher(producer, topics, "loader")
        self._http = http or httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=10.0))
        self._busy = asyncio.Lock()  # held while an item is handled and committed
        self._revoked: set[TopicPartition] = set()

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        """Before the group takes ``partitions``: let the item in hand finish and commit."""
        self._revoked |= partitions
        async with self._busy:
            log.info("loader.attachment.revoked", partitions=sorted(map(str, partitions)))

    def assigned(self, partitions: set[TopicPartition]) -> None:
        """``partitions`` are this worker's again (read on from their committed offsets)."""
        self._revoked -= partitions
        log.info("loader.attachment.assigned", partitions=sorted(map(str, partitions)))

    async def run(self, stop: asyncio.Event) -> None:
        """Handle items one by one until ``stop``; each offset is committed once handled."""
        self._consumer.subscribe([self._topics.attachments_work], listener=_Rebalance(self))
        await self._consumer.start()
        try:
            while not stop.is_set():
                batches = await self._consumer.getmany(timeout_ms=500, max_records=1)
                for tp, records in batches.items():
                    for record in records:
                        await self._until_handled(tp, record)
        finally:
            await self._consumer.stop()
            await self._http.aclose()

    async def _until_handled(self, tp: TopicPartition, record: Any) -> None:
        """Handle one item and commit it; a broker that does not answer is waited out and the
        item handled again (the alias check makes a second upload a skip), never a crash; a
        rebalance leaves the item to the partition's owner after it (module docstring, 6)."""
        async with self._busy:
            if tp in self._revoked:
                log.info("loader.attachment.left_to_owner", partition=str(tp), offset=record.offset)
                return
            await until_broker_answers(
                lambda: self._handle(tp, record), "an attachment item", self._retry, _waiting
            )
            try:
                await until_broker_answers(
                    lambda: self._consumer.commit({tp: record.offset + 1}),
                    "an attachment commit",
                    self._retry,
                    _waiting,
                )
            except (CommitFailedError, IllegalStateError) as exc:
                log.warning(
                    "loader.attachment.rebalanced",
                    partition=str(tp),
                    offset=record.offset,
                    error=str(exc)[:300],
                )

    async def _handle(self, tp: TopicPartition, record: Any) -> None:
        source = SourceRecord(
            tp.topic, tp.partition, record.offset, record.key, record.value, tuple(record.headers)
        )
        try:
            work = codec.decode_model(record.value, AttachmentWork, supported_versions=_V1)
        except PoisonMessageError as exc:
            await self._dead_letter(source, None, ErrorClass.POISON, exc.error_type, str(exc))
            return
        if await self._diverted(work, source):
            return
        started = time.monotonic()
        try:
            done = await retry_until_ok(lambda: self._attach(work), self._retry)
        except _ExpiredError:
            await self._ask_refresh(work, source, "the download URL expired")
            return
        except PermanentError as exc:
            await self._dead_letter(source, work, ErrorClass.PERMANENT, exc.error_type, str(exc))
            return
        self._metrics.files.labels(work.flow, done.result).inc()
        seconds = time.monotonic() - started
        log.info(
            "loader.attachment.done",
            flow=work.flow,
            bill_key=work.bill_key,
            file_id=work.file.file_id,
            result=done.result,
            bytes=done.size,
            seconds=round(seconds, 3),
        )
        await self._send_result(work, done.result, done.attachment_id, done.size, None)

    async def _diverted(self, work: AttachmentWork, source: SourceRecord) -> bool:
        """A refused item is dead-lettered (a replayed one goes back for a new check), one
        without a usable URL goes back for a new URL; True when the item was handled so."""
        if work.refused is not None:
            if int(hdr.get(source.headers, REPLAY_COUNT) or 0) > 0:
                await self._ask_refresh(work, source, "replayed after a refusal")
            else:
                kind = work.refused_type or "refused"
                await self._dead_letter(source, work, ErrorClass.PERMANENT, kind, work.refused)
            return True
        now_ms = int(time.time() * 1000)
        if not work.url or (work.url_expires_ms or 0) - now_ms < _URL_MARGIN_MS:
            await self._ask_refresh(work, source, "no download URL, or it expires within a minute")
            return True
        return False

    async def _attach(self, work: AttachmentWork) -> _Done:
        # the download starts while the bill is looked up; a file found attached stops it
        async with ReadAhead(self._chunks(work)) as chunks:
            lane = await self._lanes.get()
            try:
                inter_id = work.kingdee_id or await self._bill_id(lane, work)
                existing = await self._existing(lane, work, inter_id)
                if existing is not None:
                    return _Done("already_attached", existing)
                return await self._upload(lane, work, inter_id, chunks)
            finally:
                self._lanes.put_nowait(lane)

    async def _bill_id(self, lane: Lane, work: AttachmentWork) -> int:
        found = await self._client.existing(lane, work.form_id, work.number_field, [work.number])
        if work.number not in found:
            raise PermanentError(
                f"bill {work.number} ({work.form_id}) is not in Kingdee: the file has no bill "
                "to go to; replay after the bill is saved",
                code="attachment_no_bill",
            )
        return found[work.number]

    async def _existing(self, lane: Lane, work: AttachmentWork, inter_id: int) -> int | None:
        """The ``BOS_Attachment`` id of this file on the bill, if it is attached (§10.4.3)."""
        alias = alias_of(work).replace("'", "''")
        data = {
            "FormId": "BOS_Attachment",
            "FieldKeys": "FID,FALIASFILENAME",
            "FilterString": f"FBillType='{work.form_id}' and FInterID='{inter_id}' "
            f"and FALIASFILENAME='{alias}'",
            "Limit": 10,
        }
        payload = await self._client.call(lane, "executebillquery", {"data": data})
        listed = payload if isinstance(payload, list) else []
        rows = [r for r in listed if isinstance(r, list) and r and not isinstance(r[0], dict)]
        if listed and not rows:
            raise TransientError("Kingdee BOS_Attachment query failed", code="kingdee_query_failed")
        return int(rows[0][0]) if rows else None

    async def _upload(
        self, lane: Lane, work: AttachmentWork, inter_id: int, chunks: ReadAhead
    ) -> _Done:
        base = {
            "FileName": work.file.file_name,
            "FormId": work.form_id,
            "InterId": str(inter_id),
            "BillNO": work.number,
            "AliasFileName": alias_of(work),
        }
        file_id, size, attachment_id = "", 0, None
        async for chunk in chunks:
            data: dict[str, Any] = {**base, "IsLast": chunk.last}
            if file_id:
                data["FileId"] = file_id
            body = send_byte_body(codec.dumps({"data": data}), chunk)
            answer = await self._client.call(lane, "attachmentupload", body)
            result = answer.get("Result") if isinstance(answer, dict) else None
            status = (result or {}).get("ResponseStatus") or {}
            if not status.get("IsSuccess"):
                errors = "; ".join(str(e.get("Message")) for e in status.get("Errors") or [])
                raise PermanentError(
                    f"Kingdee refused attachment {work.file.file_name!r} for bill "
                    f"{work.number}: {errors or status}. Fix it in Kingdee (bill audited or "
                    "locked? file storage configured?) and replay",
                    code="kingdee_attachment_refused",
                )
            file_id = str((result or {}).get("FileId") or file_id)
            size += chunk.size
            entities = status.get("SuccessEntitys") or []
            if chunk.last and entities:
                attachment_id = int(entities[0]["Id"])
        self._metrics.bytes.labels(work.flow).inc(size)
        return _Done("attached", attachment_id, size)

    async def _chunks(self, work: AttachmentWork) -> AsyncIterator[Chunk]:
        """The file's bytes in ``chunk_bytes`` chunks, encoded, the last one marked."""
        assert work.url is not None  # noqa: S101 - checked by the caller
        try:
            async with self._http.stream("GET", work.url) as response:
                _check_download(work, response.status_code)
                async for chunk in chunked(response.aiter_bytes(), self._chunk):
                    yield chunk
        except httpx.TransportError as exc:
            raise TransientError(
                f"download of {work.file.file_name!r} failed: {type(exc).__name__}",
                code="download_transport",
            ) from exc

    async def _ask_refresh(self, work: AttachmentWork, source: SourceRecord, why: str) -> None:
        self._metrics.files.labels(work.flow, "refresh_requested").inc()
        log.info(
            "loader.attachment.refresh", bill_key=work.bill_key, file=work.file.file_id, why=why
        )
        await self._producer.send_and_wait(
            self._topics.attachments_refresh,
            value=codec.encode_model(AttachmentRefresh(work=work, reason=why)),
            key=work.bill_key.encode(),
            headers=hdr.replace(list(source.headers), {}),
        )

    async def _dead_letter(
        self,
        source: SourceRecord,
        work: AttachmentWork | None,
        error_class: ErrorClass,
        error_type: str,
        message: str,
    ) -> None:
        flow = work.flow if work else hdr.get(source.headers, hdr.FLOW) or "unknown"
        log.warning("loader.attachment.dead_lettered", flow=flow, error=message)
        await self._dlq.publish(
            source, error_class=error_class, error_type=error_type, message=message
        )
        self._metrics.files.labels(flow, "dead_lettered").inc()
        self._metrics.failures.labels(flow, error_type).inc()
        if work is not None:
            await self._send_result(work, "dead_lettered", None, 0, message)

    async def _send_result(
        self,
        work: AttachmentWork,
        outcome: str,
        attachment_id: int | None,
        size: int,
        msg: str | None,
    ) -> None:
        result = AttachmentResult(
            flow=work.flow,
            bill_key=work.bill_key,
            number=work.number,
            process_instance_id=work.process_instance_id,
            file_id=work.file.file_id,
            file_name=work.file.file_name,
            outcome=outcome,
            attachment_id=attachment_id,
            bytes=size,
            message=msg,
        )
        await self._producer.send_and_wait(
            self._topics.attachments_result,
            value=codec.encode_model(result),
            key=work.bill_key.encode(),
        )


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: AttachmentWorker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._worker.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._worker.assigned(set(assigned))


def _waiting(exc: TransientError, attempt: int, delay: float) -> None:
    log.warning(
        "loader.attachment.kafka_unavailable",
        attempt=attempt,
        next_in=round(delay, 3),
        error=exc.message,
    )


def _check_download(work: AttachmentWork, status: int) -> None:
    if status in (200, 206):
        return
    if status == 403:
        raise _ExpiredError(work.file.file_id)
    if status == 404:
        raise PermanentError(
            f"file {work.file.file_name!r} ({work.file.file_id}) of approval "
            f"{work.process_instance_id} is gone from DingTalk (HTTP 404): ask the applicant to "
            "add it again, or attach it in Kingdee by hand",
            code="attachment_not_found",
        )
    raise TransientError(
        f"download of {work.file.file_name!r}: HTTP {status}", code=f"http_{status}"
    )
