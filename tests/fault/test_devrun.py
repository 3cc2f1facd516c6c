"""``make run`` (``dingdee_dev.run.run``) rides out a killed service and a frozen sandbox.

The whole dev stack runs as ``make run`` starts it (the tests' broker instead of its own). While it
loads: the loader is SIGKILLed (the supervisor restarts it, the progress shows the count) and the
Kingdee sandbox is frozen with SIGSTOP (the progress shows it not answering; nothing crashes),
then thawed. The run still ends with the exact bill set, and the progress keeps updating after its
summary (a dead letter written afterwards shows up) until it is stopped.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import socket
from pathlib import Path

import pytest
from rich.console import Console

from dingdee_common.settings import RetrySettings
from dingdee_dev.broker import free_port
from dingdee_dev.procs import Supervisor
from dingdee_dev.run import RunOptions, run
from dingdee_dev.stack import Stack, StackConfig
from dingdee_dev.watch import Watcher, expected_bills
from tests.helpers import poll_until
from tests.integration.test_pipeline_e2e import bill_numbers
from tests.integration.test_transformer_service import produce

pytestmark = [pytest.mark.fault, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SUMMARY = "approved demo approvals are bills in the Kingdee sandbox"


async def test_a_killed_service_and_a_frozen_sandbox_do_not_stop_make_run(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    config = StackConfig(
        workdir=tmp_path,
        flows_file=ROOT / "config" / "flows.yaml",
        demo=40,
        seed=3,
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"run{tmp_path.name[-6:]}.",
    )
    options = RunOptions(
        timeout=300,
        poll_timeout=1.0,
        interval=0.3,
        restart_backoff=RetrySettings(initial_backoff_seconds=0.2, max_backoff_seconds=1.0),
    )
    out = io.StringIO()
    console = Console(file=out, width=300)  # not a terminal: one line per change
    stop = asyncio.Event()
    running: list[tuple[Stack, Supervisor]] = []
    task = asyncio.create_task(
        run(config, options, console, stop, lambda *started: running.append(started))
    )

    def shown(pattern: str, after: int = 0) -> bool:
        return re.search(pattern, out.getvalue()[after:]) is not None

    try:
        await poll_until(lambda: bool(running) or task.done(), timeout=120, what="the stack")
        assert not task.done(), out.getvalue()
        stack, supervisor = running[0]
        kingdee = stack.processes["sandbox-kingdee"]
        assert kingdee.pid is not None

        stack.kill("loader")
        os.kill(kingdee.pid, signal.SIGSTOP)
        try:
            await poll_until(
                lambda: shown(r"Kingdee not answering"), timeout=30, what="Kingdee not answering"
            )
            await poll_until(
                lambda: shown(r"loader [^·]*\(restarts 1\)"), timeout=30, what="loader restarted"
            )
        finally:
            os.kill(kingdee.pid, signal.SIGCONT)
        assert supervisor.states["loader"].restarts == 1
        assert stack.processes["loader"].alive

        await poll_until(lambda: shown(SUMMARY), timeout=240, what="the summary")
        assert not task.done(), "the run stopped after its summary"
        expectation = await expected_bills(stack)
        got = await bill_numbers(stack, expectation)
        for form, expected in expectation.by_form.items():
            assert set(got[form]) == expected, f"{form}: missing or extra bills"
            assert all(n == 1 for n in got[form].values()), f"{form}: a bill twice"

        after = out.getvalue().index(SUMMARY)
        dlq = stack.topics.dlq("loader")
        await produce(stack.kafka, dlq, [(b"k1", b"v1"), (b"k2", b"v2")])
        await poll_until(
            lambda: shown(r"dead-lettered 2", after), timeout=30, what="2 dead letters shown"
        )
    finally:
        stop.set()
        code = await asyncio.wait_for(task, 120)
        print(out.getvalue()[-6000:])
    assert code == 0
    assert "Traceback" not in out.getvalue()
    assert "stopped cleanly." in out.getvalue()


async def test_a_poll_of_parts_that_do_not_answer_returns_in_time_and_says_so(
    tmp_path: Path,
) -> None:
    """A frozen part (accepts connections, never answers) and a gone one (refuses them)."""
    frozen = socket.create_server(("127.0.0.1", 0))  # listens, never accepts: like SIGSTOP
    gone = free_port()
    try:
        stack = Stack(StackConfig(workdir=tmp_path, flows_file=ROOT / "config" / "flows.yaml"))
        stack.bootstrap = f"127.0.0.1:{frozen.getsockname()[1]}"
        stack.kingdee_url = f"http://127.0.0.1:{frozen.getsockname()[1]}"
        stack.dingtalk_url = f"http://127.0.0.1:{gone}"
        # 2 s: a refused connection must show as refused even on a loaded machine (0.5 s was
        # sometimes spent before the refusal arrived, and it read as a timeout)
        watcher = Watcher(stack, Supervisor({}, RetrySettings()), RunOptions(poll_timeout=2.0))
        try:
            progress = await asyncio.wait_for(watcher.poll(1.0), 15)
        finally:
            watcher.close()
    finally:
        frozen.close()
    assert progress.parts == {
        "Kafka": "not answering (timeout)",
        "DingTalk": "not answering (connection refused)",
        "Kingdee": "not answering (timeout)",
    }
    assert "extracted ? · transformed ? · loaded (Kingdee) ? · expected ?" in progress.line()
    assert "Kingdee not answering (timeout)" in progress.line()
