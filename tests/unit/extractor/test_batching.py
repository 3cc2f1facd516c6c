"""Group commit of a flow's events: what arrives while a batch runs forms the next batch."""

from __future__ import annotations

import asyncio

import pytest

from dingdee_extractor.batching import Batcher


class Recorder:
    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail_on = fail_on
        self.release = asyncio.Event()

    async def handle(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        await self.release.wait()
        if self.fail_on in items:
            raise ValueError(f"batch with {self.fail_on}")
        return [i * 10 for i in items]


async def test_items_arriving_during_a_batch_form_the_next_one_and_get_their_own_results() -> None:
    rec = Recorder()
    batcher: Batcher[int, int] = Batcher(rec.handle)
    first = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0)
    later = [asyncio.create_task(batcher.submit(i)) for i in (2, 3, 4)]
    await asyncio.sleep(0)
    rec.release.set()
    assert await first == 10
    assert await asyncio.gather(*later) == [20, 30, 40]
    assert rec.batches == [[1], [2, 3, 4]]


async def test_a_failed_batch_fails_each_of_its_items_and_the_next_batch_runs() -> None:
    rec = Recorder(fail_on=2)
    batcher: Batcher[int, int] = Batcher(rec.handle, most=2)
    tasks = [asyncio.create_task(batcher.submit(i)) for i in (1, 2, 3)]
    await asyncio.sleep(0)
    rec.release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [type(r) for r in results[:2]] == [ValueError, ValueError]
    assert results[2] == 30
    assert rec.batches == [[1, 2], [3]]


async def test_a_cancelled_submitter_is_left_out_of_the_next_batch() -> None:
    rec = Recorder()
    batcher: Batcher[int, int] = Batcher(rec.handle)
    first = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0)
    gone = asyncio.create_task(batcher.submit(2))
    kept = asyncio.create_task(batcher.submit(3))
    await asyncio.sleep(0)
    gone.cancel()
    rec.release.set()
    assert await first == 10 and await kept == 30
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert rec.batches == [[1], [3]]
