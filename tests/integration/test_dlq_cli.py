"""The `dingdee dlq` commands as an operator runs them (a real process against the real broker)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from asyncio.subprocess import PIPE, STDOUT

import pytest

from dingdee_common.dlq import ReplayEngine
from dingdee_common.errors import ErrorClass
from dingdee_common.kafka.topics import Topics
from dingdee_common.settings import KafkaSettings
from tests.helpers import dingdee, poll_until
from tests.integration.test_dlq_replay import Seed, audits, committed, read_topic, seed

pytestmark = pytest.mark.integration


async def test_list_inspect_and_dry_run_read_in_chinese(
    kafka: KafkaSettings, topics: Topics
) -> None:
    await seed(
        kafka,
        topics,
        [
            Seed("loader", topics.bills_ready, "BX-1"),
            Seed("loader", topics.bills_ready, "BX-2"),
            Seed("transformer", topics.approvals_raw, "inst-3", error_class=ErrorClass.POISON,
                 error_type="undecodable", message="消息体不是 JSON"),
        ],
    )  # fmt: skip
    code, out = await dingdee(kafka, "dlq", "list")
    assert code == 0, out
    assert "死信统计" in out and "合计 3 条" in out
    assert "kingdee_row_rejected" in out and "undecodable" in out

    code, out = await dingdee(kafka, "dlq", "inspect", "--stage", "transformer")
    assert code == 0, out
    assert "消息体不是 JSON" in out and "inst-3" in out and "dlq-original-topic" in out
    assert "符合条件 1 条" in out

    code, out = await dingdee(kafka, "dlq", "replay", "--flow", "petty-cash")
    assert code == 0, out
    assert "演练" in out and "--execute" in out
    assert await read_topic(kafka, topics.bills_ready) == []


async def test_bad_arguments_are_refused(kafka: KafkaSettings) -> None:
    code, out = await dingdee(kafka, "dlq", "list", "--stage", "nope")
    assert code == 2 and "未知阶段" in out
    code, out = await dingdee(kafka, "dlq", "replay", "--since", "yesterday")
    assert code == 2


async def test_ctrl_c_stops_cleanly_and_a_rerun_finishes(
    kafka: KafkaSettings, topics: Topics
) -> None:
    n = 200
    await seed(kafka, topics, [Seed("loader", topics.bills_ready, f"BX-{i:04d}") for i in range(n)])
    env = {
        **os.environ,
        "DINGDEE_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "DINGDEE_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
    }
    argv = ("-c", "from dingdee_common.cli.main import main; main()", "dlq", "replay", "--execute")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *argv, "--rate", "25", env=env, stdout=PIPE, stderr=STDOUT
    )

    async def some_copied() -> bool:
        return len(await read_topic(kafka, topics.bills_ready)) >= 100

    await poll_until(some_copied, timeout=60, what="the first chunk of copies")
    proc.send_signal(signal.SIGINT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 130, out.decode()
    assert "已中断" in out.decode()
    [audit] = await audits(kafka, topics)
    assert audit.outcome == "interrupted"
    done = audit.counts.get("done_replay", 0)
    assert 100 <= done < n
    engine = ReplayEngine(kafka, topics)
    assert await committed(kafka, engine, topics.dlq("loader")) == done, "commit = acked copies"

    code, text = await dingdee(kafka, "dlq", "replay", "--execute", "--rate", "0")
    assert code == 0, text
    keys = [k for k, _, _ in await read_topic(kafka, topics.bills_ready)]
    assert set(keys) == {f"BX-{i:04d}".encode() for i in range(n)}
    assert len(keys) == n, "a clean interrupt copies nothing twice"
