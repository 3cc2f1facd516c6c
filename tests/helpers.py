"""Helpers shared by tests: bounded waits that say what they wait for."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from asyncio.subprocess import PIPE, STDOUT
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path
from typing import Any

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


__all__ = ["dingdee", "poll_until", "read_topic", "wait_not_ready"]


async def wait_not_ready(port: int, saying: str, *, timeout: float = 60) -> None:
    """Wait until a service's ``/readyz`` on ``port`` answers 503 with ``saying`` in its reason."""
    import httpx

    async def not_ready() -> bool:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/readyz")
        return response.status_code == 503 and saying in response.text

    await poll_until(not_ready, timeout=timeout, what=f"/readyz saying {saying!r}")


async def dingdee(kafka: KafkaSettings, *args: str, timeout: float = 60) -> tuple[int, str]:
    """Run the ``dingdee`` command line against ``kafka``; its exit code and output."""
    env = {
        **os.environ,
        "DINGDEE_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "DINGDEE_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
        "COLUMNS": "200",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from dingdee_ops.cli.main import main; main()", *args,
        env=env, stdout=PIPE, stderr=STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def json_log_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a service log, parsed; fails naming the first line that is not JSON."""
    out: list[dict[str, Any]] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            pytest.fail(f"{path.name}:{number} is not a JSON log line: {line[:200]!r}")
    return out


ROOT = Path(__file__).resolve().parents[1]


def clear_files(form: list[dict[str, Any]]) -> None:
    """Empty every ``DDAttachment`` of a form in read format, in place: the components and the
    cells of ``TableField`` rows (dingtalk.md §3.4, §9.3)."""
    for comp in form:
        if comp.get("component_type") == "DDAttachment":
            comp["value"] = "[]"
        elif comp.get("component_type") == "TableField" and "rowValue" in str(comp.get("value")):
            rows = json.loads(comp["value"])
            for row in rows:
                for cell in row.get("rowValue", []):
                    if cell.get("componentType") == "DDAttachment":
                        cell["value"] = "null"
            comp["value"] = json.dumps(rows, ensure_ascii=False)


@cache
def demo_flows_file() -> Path:
    """``config/flows.yaml`` plus the demo organisation's static tables (tests/demo_tables.yaml).

    The example's lookups are live: the loader and the extractor publish the tables the
    transformer resolves against. A test that maps records with neither running (a transformer
    on its own, a mapping in-process, a stack whose point is not master data) uses this file, so
    its records load at once instead of waiting for a refresh. One file per test process.
    """
    text = (ROOT / "config" / "flows.yaml").read_text(encoding="utf-8")
    tables = (ROOT / "tests" / "demo_tables.yaml").read_text(encoding="utf-8")
    path = Path(tempfile.mkdtemp(prefix="dingdee-demo-flows-")) / "flows.yaml"
    path.write_text(f"{text}\n{tables}", encoding="utf-8")
    return path
