"""A downloaded file cut into ``AttachmentUpLoad`` chunks, each already Base64 (issue #18).

kingdee.md §10.4.1: each chunk's ``SendByte`` is the Base64 of that chunk alone. The bytes are
encoded as they arrive from the download, piece by piece (a piece's last 0–2 bytes wait for the
next, so the pieces' encodings concatenated are the chunk's encoding), and a chunk is handed on
as the list of those encoded pieces: nothing is joined, sliced or copied whole, and the upload
writes the pieces to the socket as they are (``KingdeeClient.call`` with a pre-encoded body).
Run ahead of the upload, this moves the encoding off the upload's path.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from types import TracebackType

import pybase64

__all__ = ["Chunk", "ReadAhead", "chunked", "send_byte_body"]

_TAIL = b'"}}'


@dataclass(frozen=True, slots=True)
class Chunk:
    """One upload chunk: its Base64 text in pieces, its size in bytes, whether it is the last."""

    parts: tuple[bytes, ...]
    size: int
    last: bool


def send_byte_body(head_json: bytes, chunk: Chunk) -> tuple[bytes, ...]:
    """The JSON body ``{"data": {...head..., "SendByte": "<chunk>"}}`` in pieces.

    ``head_json`` is the encoded ``{"data": {...}}`` without ``SendByte`` (a non-empty object);
    Base64 needs no JSON escaping, so the pieces go between the quotes as they are.
    """
    if not head_json.endswith(b"}}"):
        raise ValueError("head_json must be a JSON object ending in a non-empty 'data' object")
    return (head_json[:-2] + b',"SendByte":"', *chunk.parts, _TAIL)


class _Encoder:
    """The Base64 of one chunk, fed piece by piece."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self._carry = b""

    def feed(self, view: memoryview) -> None:
        self.size += len(view)
        if self._carry:
            need = 3 - len(self._carry)
            if len(view) < need:
                self._carry += bytes(view)
                return
            self.parts.append(pybase64.b64encode(self._carry + bytes(view[:need])))
            view = view[need:]
        cut = len(view) - len(view) % 3
        if cut:
            self.parts.append(pybase64.b64encode(view[:cut]))
        self._carry = bytes(view[cut:])

    def close(self, last: bool) -> Chunk:
        if self._carry:
            self.parts.append(pybase64.b64encode(self._carry))  # padded: the chunk ends here
        return Chunk(tuple(self.parts), self.size, last)


async def chunked(pieces: AsyncIterable[bytes], chunk_bytes: int) -> AsyncIterator[Chunk]:
    """``pieces`` (a download, any sizes) as chunks of ``chunk_bytes`` (the last one shorter,
    or empty for an empty file), each encoded; one chunk is held back to know which is last."""
    held: Chunk | None = None
    current = _Encoder()
    async for piece in pieces:
        view = memoryview(piece)
        while view:
            take = min(len(view), chunk_bytes - current.size)
            current.feed(view[:take])
            view = view[take:]
            if current.size == chunk_bytes:
                if held is not None:
                    yield held
                held, current = current.close(last=False), _Encoder()
    if current.size or held is None:
        if held is not None:
            yield held
        held = current.close(last=False)
    yield Chunk(held.parts, held.size, last=True)


class ReadAhead:
    """``chunks`` read one chunk ahead in a task from the moment the context is entered, so the
    download and the encoding overlap whatever comes before the upload and the upload itself
    (at most four chunks in memory: uploading, queued, held back, filling). An error of the
    download is raised where the chunk it stopped would have been read; leaving the context
    stops the download."""

    def __init__(self, chunks: AsyncIterator[Chunk]) -> None:
        self._chunks = chunks
        self._queue: asyncio.Queue[Chunk | Exception] = asyncio.Queue(maxsize=1)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ReadAhead:
        self._task = asyncio.create_task(self._fill())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _fill(self) -> None:
        try:
            async for chunk in self._chunks:
                await self._queue.put(chunk)
        except Exception as exc:  # noqa: BLE001 - handed to the reader, raised there
            await self._queue.put(exc)

    async def __aiter__(self) -> AsyncIterator[Chunk]:
        while True:
            item = await self._queue.get()
            if isinstance(item, Exception):
                raise item
            yield item
            if item.last:
                return
