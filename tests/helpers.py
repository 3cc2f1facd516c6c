"""Helpers shared by tests: bounded waits that say what they wait for."""

from __future__ import annotations

import asyncio
import os
import sys
from asyncio.subprocess import PIPE, STDOUT
from collections.abc import Awaitable, Callable

import pytest

from dingdee_common.kafka.reading import read_topic
from dingdee_common.settings import KafkaSettings


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


__all__ = ["dingdee", "poll_until", "read_topic"]


async def dingdee(kafka: KafkaSettings, *args: str, timeout: float = 60) -> tuple[int, str]:
    """Run the ``dingdee`` command line against ``kafka``; its exit code and output."""
    env = {
        **os.environ,
        "DINGDEE_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "DINGDEE_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
        "COLUMNS": "200",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from dingdee_common.cli.main import main; main()", *args,
        env=env, stdout=PIPE, stderr=STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode()
