"""Kingdee reference sources, refreshed by the loader (issue #14).

Each ``kingdee`` source of ``flows.yaml`` is read in full with ``ExecuteBillQuery`` (kingdee.md
§10.2: ``FieldKeys``, ``FilterString``, a stable ``OrderString`` on the key, ``StartRow``/``Limit``
paging until a short page) on one of the loader's lanes (its session and concurrency limit), and
published to ``refdata.<source>`` (changed rows, tombstones, a refresh marker). Refreshes run on
the source's schedule (``refresh_seconds``, default 600 s) and on request: the transformer asks on
``refdata.requests`` when a lookup misses; requests for one source are coalesced to one query per
``DINGDEE_REFDATA__MIN_INTERVAL_SECONDS``. Disabled (``FForbidStatus`` B) and unaudited rows are
published with their status, not dropped: the transformer reports "disabled" rather than
"missing" and waits for an audit. A ``BD_Department`` (any form a source reads) the loader saves
is published at once (``saved``), so a claim waiting for that department loads next.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from dingdee_common.contracts.v1 import BillReady
from dingdee_common.errors import TransientError
from dingdee_common.kafka.clients import broker_unavailable, make_consumer
from dingdee_common.kafka.topics import Topics, provision
from dingdee_common.observability.logging import get_logger
from dingdee_common.refdata import RefRow, SourceSpec, decode_request, kingdee_status
from dingdee_common.refpublish import RefPublisher
from dingdee_common.retry import retry_transient
from dingdee_loader.kingdee.client import KingdeeClient, Lane
from dingdee_loader.settings import LoaderSettings

__all__ = ["Refresher", "query_all"]

log = get_logger(__name__)


def _text(value: Any) -> str:
    if isinstance(value, dict):  # a reference written as {"FNumber": …}
        value = next(iter(value.values()), "")
    return "" if value is None else str(value)


async def query_all(
    client: KingdeeClient, lane: Lane, name: str, spec: SourceSpec
) -> dict[str, RefRow]:
    """Every row of a Kingdee source, page by page (kingdee.md §10.2 paging)."""
    k = spec.kingdee
    if k is None:
        raise ValueError(f"{name} is not a Kingdee source")
    rows: dict[str, RefRow] = {}
    start = 0
    origin = f"kingdee ExecuteBillQuery {k.form_id}"
    while True:
        data = {
            "FormId": k.form_id,
            "FieldKeys": ",".join(k.field_keys),
            "FilterString": k.filter,
            "OrderString": k.order or f"{k.key} ASC",
            "TopRowCount": 0,
            "StartRow": start,
            "Limit": k.page_size,
        }
        payload = await client.call(lane, "executebillquery", {"data": data})
        if not isinstance(payload, list):
            raise TransientError(
                f"Kingdee ExecuteBillQuery {k.form_id} answered {str(payload)[:300]}",
                code="kingdee_query_failed",
            )
        for values in payload:
            fields = {f: _text(v) for f, v in zip(k.field_keys, values, strict=False)}
            key = fields.get(k.key, "")
            if key:
                rows[key] = RefRow(
                    source=name,
                    key=key,
                    fields=fields,
                    status=kingdee_status(fields),
                    origin=origin,
                )
        if len(payload) < k.page_size:
            return rows
        start += k.page_size


class Refresher:
    """The loader's refresh task over its Kingdee sources."""

    def __init__(
        self,
        settings: LoaderSettings,
        client: KingdeeClient,
        producer: AIOKafkaProducer,
        lanes: asyncio.Queue[Lane],
        sources: Mapping[str, SourceSpec],
    ) -> None:
        self.s = settings
        self.client = client
        self.lanes = lanes
        self.sources = dict(sources)
        self.topics = Topics(settings.kafka.topic_prefix)
        self.publishers = {
            name: RefPublisher(settings.kafka, producer, name, self.topics.refdata(name))
            for name in self.sources
        }
        self.due = dict.fromkeys(self.sources, 0.0)  # monotonic time of the next refresh
        self.last = dict.fromkeys(self.sources, -1e9)
        self.wake = asyncio.Event()
        self.queries = 0  # ExecuteBillQuery pages sent (tests, bench)

    async def run(self, stop: asyncio.Event) -> None:
        """Refresh on schedule and on request until ``stop``."""
        if not self.sources:
            return
        await provision(self.s.kafka, self.topics, extra=self.topics.refdata_specs(self.sources))
        requests = make_consumer(
            self.s.kafka, self.topics.refdata_requests, group_id=f"{self.s.group_id}.refdata"
        )
        listen = asyncio.create_task(self._listen(requests))
        try:
            while not stop.is_set():
                now = time.monotonic()
                for name in [n for n, at in self.due.items() if at <= now]:
                    await self.refresh(name)
                self.wake.clear()
                wait = max(0.05, min(self.due.values()) - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=wait)
        finally:
            listen.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listen
            await requests.stop()

    async def _listen(self, consumer: AIOKafkaConsumer) -> None:
        # started here, not before the first refresh: a group consumer's start waits for its
        # group (~15 s on Tansu), and the transformer waits for that first refresh (issue #14)
        await consumer.start()
        while True:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    with contextlib.suppress(ValueError):
                        self.request(decode_request(record.value or b"").source)
            if batches:
                await consumer.commit()

    def request(self, name: str) -> None:
        """Refresh ``name`` soon: now, or when its minimum interval since the last one ends."""
        if name not in self.sources:
            return
        soonest = self.last[name] + self.s.refdata.min_interval_seconds
        self.due[name] = min(self.due[name], max(time.monotonic(), soonest))
        self.wake.set()

    async def refresh(self, name: str) -> None:
        """Read one source in full and publish what changed; on failure, try again later."""
        spec = self.sources[name]
        started = time.monotonic()
        self.last[name] = started
        self.due[name] = started + spec.refresh_interval()
        lane = await self.lanes.get()
        try:
            rows = await retry_transient(
                lambda: query_all(self.client, lane, name, spec), self.s.retry
            )
            took = time.monotonic() - started
            sent = await self.publishers[name].publish_all(rows, origin="loader", took=took)
        except (TransientError, KafkaError) as exc:  # RetryExhaustedError is transient
            # Kingdee or the broker away: the source keeps its rows and is read again later
            if isinstance(exc, KafkaError) and not broker_unavailable(exc):
                raise
            self.due[name] = started + self.s.refdata.retry_seconds
            log.warning("loader.refdata.refresh_failed", source=name, error=str(exc)[:300])
            return
        finally:
            self.lanes.put_nowait(lane)
        log.info(
            "loader.refdata.refreshed",
            source=name,
            rows=len(rows),
            changed=sent,
            seconds=round(time.monotonic() - started, 3),
        )

    async def saved(self, bill: BillReady) -> None:
        """A bill of a form a source reads was saved: publish its row at once."""
        for name, spec in self.sources.items():
            k = spec.kingdee
            if k is None or k.form_id.lower() != bill.form_id.lower():
                continue
            fields = {f: _text(bill.model.get(f)) for f in k.field_keys}
            fields[k.key] = fields.get(k.key) or bill.bill_key
            audited = bool(bill.save_options.get("IsAutoSubmitAndAudit"))
            if "FDocumentStatus" in k.field_keys:
                fields["FDocumentStatus"] = "C" if audited else "A"
            row = RefRow(
                source=name,
                key=fields[k.key],
                fields=fields,
                status=kingdee_status(fields),
                origin=f"loader saved {bill.form_id} {bill.bill_key}",
            )
            await self.publishers[name].publish_one(row)
            log.info("loader.refdata.saved_row", source=name, key=row.key)
