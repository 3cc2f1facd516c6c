"""The broker frozen or unreachable for 30 s mid-run: every service rides it out, the set is exact.

The clients' request timeout is set well below the outage, so sends in flight fail while it lasts
(as with aiokafka's default 40 s against a longer outage); the services wait them out.

Each case runs its own embedded broker (the session broker is shared by other tests). *Frozen*:
SIGSTOP; sockets stay open but nothing answers, requests time out, producers retry their batches.
*Unreachable*: the broker keeps running behind a TCP proxy that cuts every connection and refuses
new ones, as a network partition or a broker pod being rescheduled looks; group sessions lapse on
the broker, so consumers rejoin and rebalance once it is reachable again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dingdee_dev.broker import ENV_BOOTSTRAP, EmbeddedBroker, free_port
from dingdee_dev.stack import SERVICES, Stack, StackConfig
from dingdee_dev.watch import expected_bills
from tests.helpers import demo_flows_file
from tests.integration.test_pipeline_e2e import bill_numbers, loaded_count, wait_loaded

pytestmark = [
    pytest.mark.fault,
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(os.environ.get(ENV_BOOTSTRAP)), reason="the outage needs the embedded broker process"
    ),
]

ROOT = Path(__file__).resolve().parents[2]
OUTAGE_SECONDS = 30.0
REQUEST_TIMEOUT_MS = 8_000


class CuttableProxy:
    """Forwards 127.0.0.1:``port`` to the broker; :meth:`cut` drops every connection and refuses
    new ones until :meth:`mend`."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target = target_port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def mend(self) -> None:
        self._server = await asyncio.start_server(self._connect, "127.0.0.1", self.port)

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()

    async def _connect(
        self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        try:
            broker_r, broker_w = await asyncio.open_connection("127.0.0.1", self._target)
        except OSError:
            client_w.transport.abort()
            return
        self._writers |= {client_w, broker_w}
        try:
            await asyncio.gather(self._pipe(client_r, broker_w), self._pipe(broker_r, client_w))
        finally:
            self._writers -= {client_w, broker_w}
            client_w.transport.abort()
            broker_w.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()


@contextlib.asynccontextmanager
async def proxied_broker(tmp_path: Path) -> AsyncIterator[tuple[EmbeddedBroker, CuttableProxy]]:
    """A broker that advertises the proxy's address, so every client connects through it."""
    broker_port = free_port()
    proxy = CuttableProxy(broker_port)
    await proxy.mend()
    broker = EmbeddedBroker(broker_port, tmp_path / "broker.log", advertised_port=proxy.port)
    await asyncio.to_thread(broker.start)
    try:
        yield broker, proxy
    finally:
        await proxy.cut()
        await asyncio.to_thread(broker.stop)


@pytest.mark.parametrize("outage", ["frozen", "unreachable"])
async def test_broker_outage_for_30s_mid_run_loses_and_duplicates_nothing(
    tmp_path: Path, outage: str
) -> None:
    async with contextlib.AsyncExitStack() as exits:
        proxy: CuttableProxy | None = None
        if outage == "unreachable":
            broker, proxy = await exits.enter_async_context(proxied_broker(tmp_path))
        config = StackConfig(
            workdir=tmp_path,
            flows_file=demo_flows_file(),
            demo=300,
            seed=13,
            # frozen: the stack starts its own broker; unreachable: the proxied one
            kafka_bootstrap=broker.bootstrap_servers if proxy is not None else None,
            topic_prefix="outage.",
            # slow Kingdee down so the outage lands while bills are still being written
            kingdee_args=("--latency-package-seconds", "0.03"),
            # requests time out well inside the outage (aiokafka's default is 40 s): every send
            # in flight fails and must be waited out, not crash the service or dead-letter
            env={"DINGDEE_KAFKA__REQUEST_TIMEOUT_MS": str(REQUEST_TIMEOUT_MS)},
        )
        stack = await exits.enter_async_context(Stack(config))
        expectation = await expected_bills(stack)

        await wait_loaded(stack, expectation, at_least=1, timeout=180, what="the first bills")
        at_outage = await loaded_count(stack, expectation)
        pid = stack.broker.pid if stack.broker is not None else None
        if proxy is not None:
            await proxy.cut()
        else:
            assert pid is not None
            os.killpg(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(OUTAGE_SECONDS)
        finally:
            if proxy is not None:
                await proxy.mend()
            else:
                assert pid is not None
                os.killpg(pid, signal.SIGCONT)
        exited = {n: stack.processes[n].tail(5) for n in SERVICES if not stack.processes[n].alive}
        assert not exited, f"services exited during the outage: {exited}"

        await wait_loaded(
            stack, expectation, at_least=expectation.total, timeout=300, what="every bill"
        )
        await asyncio.sleep(3.0)  # a late duplicate would show up here
        got = await bill_numbers(stack, expectation)
        counts = await stack.topic_counts()
        alive = {name: stack.processes[name].alive for name in SERVICES}
        starts = {name: stack.processes[name].starts for name in SERVICES}

    assert at_outage < expectation.total, "the outage must land mid-run"
    assert alive == dict.fromkeys(SERVICES, True), "every service is still running"
    assert starts == dict.fromkeys(SERVICES, 1), "no service was restarted"
    for form, expected in expectation.by_form.items():
        assert set(got[form]) == expected, f"{form}: missing or extra bills after the outage"
        assert all(c == 1 for c in got[form].values()), f"{form}: a bill was created twice"
    dead = {k: v for k, v in counts.items() if k.startswith("dlq.")}
    assert dead == dict.fromkeys(dead, 0), f"dead letters after a broker outage: {dead}"
