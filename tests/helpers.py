"""Helpers shared by tests: bounded waits that say what they wait for."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from dingdee_common.kafka.reading import read_topic


async def poll_until(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.2,
) -> None:
    """Wait until ``check()`` is true; fail naming ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)


__all__ = ["poll_until", "read_topic"]
