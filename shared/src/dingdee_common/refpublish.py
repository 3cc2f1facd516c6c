"""Publishing a reference source to its compacted topic (issue #14): changed rows only.

The owner of a source (the loader for Kingdee, the extractor for DingTalk) reads the source's
topic once at start to learn what it holds, then, after each full read of the source, sends the
rows that changed, a tombstone for each row that is gone, and a marker row under
:data:`MARKER_KEY` saying when the refresh ended and how many rows it read (the transformer and
``dingdee refdata status`` show it as the source's last refresh). A single changed row (a saved
``BD_Department``, a contact event) goes out at once with :meth:`RefPublisher.publish_one`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any, Protocol

from dingdee_common.kafka.reading import read_topic
from dingdee_common.refdata import RefRow, decode_row, encode_row
from dingdee_common.settings import KafkaSettings

__all__ = ["MARKER_KEY", "RefPublisher"]

MARKER_KEY = "__refreshed__"


class _Sender(Protocol):
    async def send(self, topic: str, *args: Any, **kwargs: Any) -> asyncio.Future[Any]: ...


def _same(a: RefRow, b: RefRow) -> bool:
    return a.fields == b.fields and a.status == b.status


class RefPublisher:
    """One source's topic as the owner sees it: what was published, by key."""

    def __init__(self, kafka: KafkaSettings, producer: _Sender, source: str, topic: str) -> None:
        self.kafka = kafka
        self.producer = producer
        self.source = source
        self.topic = topic
        self.published: dict[str, RefRow] = {}
        self.loaded = False

    async def load(self) -> None:
        """Read the topic to its end (what earlier runs published)."""
        for record in await read_topic(self.kafka, self.topic):
            if record.key is None:
                continue
            key = record.key.decode()
            if key == MARKER_KEY:
                continue
            if record.value is None:
                self.published.pop(key, None)
            else:
                self.published[key] = decode_row(record.value)
        self.loaded = True

    async def _send(self, key: str, value: bytes | None) -> asyncio.Future[Any]:
        return await self.producer.send(self.topic, key=key.encode(), value=value)

    async def _queue(self, row: RefRow) -> asyncio.Future[Any] | None:
        old = self.published.get(row.key)
        if old is not None and _same(old, row):
            return None
        self.published[row.key] = row
        return await self._send(row.key, encode_row(row))

    async def publish_one(self, row: RefRow) -> bool:
        """Send ``row`` unless the topic already holds it (waits for the ack); True when sent."""
        future = await self._queue(row)
        if future is not None:
            await future
        return future is not None

    async def remove(self, key: str) -> None:
        if self.published.pop(key, None) is not None:
            await (await self._send(key, None))

    async def publish_all(self, rows: Mapping[str, RefRow], *, origin: str, took: float) -> int:
        """A full read of the source: changed rows, tombstones, then the marker; rows sent."""
        if not self.loaded:
            await self.load()
        futures = [f for row in rows.values() if (f := await self._queue(row)) is not None]
        for key in [k for k in self.published if k not in rows]:
            del self.published[key]
            futures.append(await self._send(key, None))
        await asyncio.gather(*futures)
        marker = RefRow(
            source=self.source,
            key=MARKER_KEY,
            fields={"rows": str(len(rows)), "seconds": f"{took:.3f}", "at": f"{time.time():.3f}"},
            origin=origin,
        )
        await (await self._send(MARKER_KEY, encode_row(marker)))
        return len(futures)
