"""Whole fetches of ``approvals.raw``, from faust's consumer to the batch loop (``batches.py``)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from faust.types import TP, Message

__all__ = ["FetchIntake"]


class FetchIntake:
    """Fetched records of one topic, whole fetches at a time, from faust's consumer to the loop.

    Bounded (``max_fetches`` lists) so a slow loop stops the consumer from fetching further.
    Records from before the latest rebalance (an older consumer generation) are dropped when
    taken, as faust's streams drop them: whoever owns the partition now reads them again from the
    committed offset.
    """

    def __init__(
        self,
        topic: str,
        *,
        generation: Callable[[], int],
        taken: Callable[[TP], None],
        max_fetches: int = 4,
    ) -> None:
        """``generation``: the consumer's current generation; ``taken(tp)``: called when the loop
        takes a fetch of ``tp`` (faust's stall detector, ``faust_adapter.stall_clock``)."""
        self.topic = topic
        self._generation = generation
        self._taken = taken
        self._fetches: asyncio.Queue[list[Message]] = asyncio.Queue(maxsize=max_fetches)
        self._pending: deque[Message] = deque()

    async def put(self, messages: list[Message]) -> None:
        """Hand over one fetch (waits while ``max_fetches`` fetches are still queued)."""
        await self._fetches.put(messages)

    def ready(self) -> bool:
        """Whether :meth:`take` has records to return without waiting for a fetch."""
        return bool(self._pending) or not self._fetches.empty()

    async def take(self, max_records: int, linger: float) -> list[Message]:
        """The next batch: 1 to ``max_records`` current records, in fetch order.

        Waits for the first record, then up to ``linger`` seconds for a fuller batch.
        """
        batch: list[Message] = []
        while not batch:
            if not self._pending:
                self._pull(await self._fetches.get())
            self._move(batch, max_records)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + linger
        while len(batch) < max_records:
            if not self._pending:
                try:
                    fetch = self._fetches.get_nowait()
                except asyncio.QueueEmpty:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        fetch = await asyncio.wait_for(self._fetches.get(), left)
                    except TimeoutError:
                        break
                self._pull(fetch)
            self._move(batch, max_records)
        return batch

    def _pull(self, fetch: list[Message]) -> None:
        """Take one fetch (records of one partition) and tell faust's stall detector so.

        The detector (``TransformerConsumer.verify_event_path``) calls a partition stalled when
        records were fetched and no stream took one for ``stall_timeout_seconds``; these records
        reach no faust stream, so the intake reports when the loop takes them, as a stream would.
        """
        if fetch:
            self._taken(fetch[0].tp)
        self._pending.extend(fetch)

    def _move(self, batch: list[Message], max_records: int) -> None:
        generation = self._generation()
        pending = self._pending
        while pending and len(batch) < max_records:
            message = pending.popleft()
            if message.generation_id == generation:
                batch.append(message)
