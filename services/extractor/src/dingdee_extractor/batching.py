"""Group commit: events that arrive while a flow is busy are handled together, in one batch.

A flow handles one event at a time under its lock, and each handling ends with a checkpoint
written and acknowledged; at tens of events a second that serial path, not DingTalk, became the
queue (issue #19, ``bench/bench_pipeline_latency.py``). A :class:`Batcher` lets every event
wait for the batch that carries it: the first starts a batch at once, the ones arriving
meanwhile form the next, whose ``get`` calls run concurrently (bounded, paced by the per-API
token bucket) and end with one checkpoint. Each submitter gets its own result, or the batch's
exception (the listener then answers LATER, as it did for one event).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["Batcher"]

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """Hands ``handle`` every item submitted while the previous batch ran (up to ``most``)."""

    def __init__(self, handle: Callable[[list[T]], Awaitable[list[R]]], most: int = 64) -> None:
        self._handle = handle
        self._most = most
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """``item``'s result, once the batch carrying it was handled."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self._most], self._pending[self._most :]
            batch = [(item, f) for item, f in batch if not f.done()]  # submitters gone
            if not batch:
                continue
            try:
                results = await self._handle([item for item, _ in batch])
            except asyncio.CancelledError:
                for _, future in [*batch, *self._pending]:
                    future.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - every submitter of the batch gets it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
