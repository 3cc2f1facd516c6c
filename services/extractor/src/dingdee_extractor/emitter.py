"""Produce approval snapshots to ``approvals.raw``: one fetch-and-emit path for every trigger."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, Literal

from dingdee_common.codec import encode_model
from dingdee_common.contracts import ApprovalSnapshot
from dingdee_common.kafka import headers as hdr
from dingdee_common.kafka.protocols import Producer
from dingdee_common.observability.tracing import publish_span

__all__ = ["Emitter", "Trigger"]

Trigger = Literal["poll", "event", "backfill", "sweep", "replay"]


class Emitter:
    """Sends snapshots; :meth:`flush` returns once the broker acknowledged every one sent."""

    def __init__(self, producer: Producer, topic: str) -> None:
        self._producer = producer
        self._topic = topic
        self._pending: list[asyncio.Future[Any]] = []

    async def emit(
        self,
        *,
        flow: str,
        process_code: str,
        instance_id: str,
        instance: dict[str, Any],
        fingerprint: str,
        trigger: Trigger,
    ) -> None:
        snapshot = ApprovalSnapshot(
            flow=flow,
            process_code=process_code,
            process_instance_id=instance_id,
            business_id=instance.get("business_id"),
            status=str(instance.get("status", "")),
            result=instance.get("result") or None,
            biz_action=str(instance.get("biz_action") or "NONE"),
            fetched_at=datetime.now(UTC),
            fingerprint=fingerprint,
            trigger=trigger,
            instance=instance,
        )
        with publish_span(self._topic, instance_id):
            headers = hdr.build(flow, instance_id)
            future = await self._producer.send(
                self._topic, value=encode_model(snapshot), key=instance_id.encode(), headers=headers
            )
        self._pending.append(future)

    async def flush(self) -> None:
        """Wait for every snapshot sent so far to be settled; raises the first send error."""
        pending, self._pending = self._pending, []
        for result in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result
