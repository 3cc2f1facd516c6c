"""The `dingdee dlq` commands as an operator runs them (a real process against the real broker)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from asyncio.subprocess import PIPE, STDOUT
from pathlib import Path

import orjson
import pytest

from dingdee_common.errors import ErrorClass
from dingdee_common.kafka import headers as hdr
from dingdee_common.kafka.clients import make_producer
from dingdee_common.kafka.dlq import DeadLetterPublisher, SourceRecord
from dingdee_common.kafka.topics import Topics
from dingdee_common.settings import KafkaSettings
from dingdee_ops.dlq import ReplayEngine
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
    argv = ("-c", "from dingdee_ops.cli.main import main; main()", "dlq", "replay", "--execute")
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


# Any C0/C1 control (ESC, NUL, BEL …) except newline, and the bidi controls that reorder text.
RAW_CONTROL = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
FLOW = "petty\x1b[31m-cash"
HOSTILE_KEY = b"BX-\x1b[2J\x00[red]evil[/red]\xe2\x80\xae"  # ESC, NUL, rich markup, U+202E


async def seed_hostile(kafka: KafkaSettings, topics: Topics) -> None:
    """Dead letters a bad producer could have caused, through the real publisher."""
    big = b'{"note": "' + b"x" * (3 << 20) + b'\x1b[2J"}'  # 3 MB, not even valid JSON at the end
    values = [b"\x00\x1b[2J\x1b]0;pwned\x07", orjson.dumps({"remark": "\x1b[5m\u202egnp.exe"}), big]
    producer = make_producer(kafka)
    await producer.start()
    try:
        for i, value in enumerate(values):
            headers = hdr.build(FLOW, f"inst-\x1b[1m{i}")
            headers.append(("x-\x1b[31mname", b"\x9b31m\x1b[0m\x00"))
            record = SourceRecord(
                topics.bills_ready, 0, 500 + i, HOSTILE_KEY, value, tuple(headers)
            )
            await DeadLetterPublisher(producer, topics, "loader").publish(
                record,
                error_class=ErrorClass.PERMANENT,
                error_type="kingdee\x1b[8m_row_rejected",
                message="金额\x1b[2K\r不能为负 [bold]boom[/bold]",
            )
    finally:
        await producer.stop()


def assert_terminal_safe(out: str, max_chars: int = 200_000) -> None:
    found = RAW_CONTROL.search(out)
    assert found is None, (
        f"raw {found.group()!r} at {found.start()}: {out[: found.start()][-80:]!r}"
    )
    assert len(out) < max_chars, f"{len(out)} characters printed"


async def test_hostile_records_never_reach_the_terminal_raw(
    kafka: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    await seed_hostile(kafka, topics)
    outputs = {}
    for args in (
        ("dlq", "list"),
        ("dlq", "inspect", "--limit", "10"),
        ("dlq", "replay", "--flow", FLOW),  # the dry run's plan and sample lines
    ):
        code, out = await dingdee(kafka, *args)
        assert code == 0, out
        assert_terminal_safe(out)
        assert "petty\\x1b[31m-cash" in out, f"{args}: the flow is shown with its escape visible"
        outputs[args[1]] = out
    assert "待处理" in outputs["list"] and "合计 3 条" in outputs["list"]
    inspect = outputs["inspect"]
    assert "[red]evil[/red]" in inspect, "rich markup in a key is shown, not interpreted"
    assert "[bold]boom[/bold]" in inspect and "\\u202e" in inspect and "\\x00" in inspect
    assert "已截断：共" in inspect and "--full" in inspect, "the 3 MB value is cut"

    raw = tmp_path / "value.bin"
    code, out = await dingdee(
        kafka, "dlq", "inspect", "--offset", "2", "--full", "--raw", str(raw), timeout=120
    )
    assert code == 0, out[-2000:]
    assert_terminal_safe(out, max_chars=4 << 20)
    assert raw.read_bytes().startswith(b'{"note": "xxx') and raw.stat().st_size > 3 << 20
    assert "已截断" not in out, "--full prints the whole value (escaped)"


async def test_list_tells_pending_from_replayed(kafka: KafkaSettings, topics: Topics) -> None:
    """A replayed dead letter that fails again is one pending letter, not two."""
    await seed(kafka, topics, [Seed("loader", topics.bills_ready, "BX-R1")])
    code, out = await dingdee(kafka, "dlq", "replay", "--execute", "--rate", "0")
    assert code == 0, out
    assert len(await read_topic(kafka, topics.bills_ready)) == 1
    # the replayed copy fails again in the loader: a second dead letter of the same bill
    await seed(kafka, topics, [Seed("loader", topics.bills_ready, "BX-R1", replay_count=1)])
    code, out = await dingdee(kafka, "dlq", "list")
    assert code == 0, out
    assert "合计 2 条：待处理 1 条，已重放/停放 1 条" in out, out
    code, out = await dingdee(kafka, "dlq", "inspect", "--key", "BX-R1")
    assert out.count("已重放/停放（见 dlq.replay.audit）") == 1 and out.count("待处理") == 1, out
