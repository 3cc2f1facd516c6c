"""The local stack: embedded broker, both sandboxes and the three services as separate processes.

``make run`` (``dingdee-dev run``) uses it to run the real pipeline on the embedded default and show
live progress; the end-to-end and fault tests use it to get the same stack they can kill parts of.
Nothing here is a mock: every service is the production entry point talking TCP and HTTP.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from dingdee_common.kafka.clients import make_consumer
from dingdee_common.kafka.reading import exact_end_offsets, partitions_of
from dingdee_common.kafka.topics import Topics, provision
from dingdee_common.settings import KafkaSettings
from dingdee_dev.broker import ENV_BOOTSTRAP, EmbeddedBroker, free_port
from dingdee_dev.procs import ManagedProcess, wait_http_ok
from dingdee_sandbox.demo_org import DEMO_APP

__all__ = ["SERVICES", "Stack", "StackConfig", "start_sandbox"]

SERVICES = ("extractor", "transformer", "loader")

# Demo credentials of the sandboxes (dingdee_sandbox.demo_org and the Kingdee sandbox defaults):
# public sample values, not secrets.
_KINGDEE_DEMO = {
    "ACCT_ID": "5db25ac8d2b819",
    "USERNAME": "webapi",
    "APP_ID": "204399_72epSbtEQMC92Vwt2d3LRa9LRqSc1tqJ",
    "APP_SECRET": "fb7d46647ac346dbb5fcd45b65512a45",
    "AUTH_MODE": "signature",
}


@dataclass
class StackConfig:
    """What to start. Defaults give the ``make run`` demo."""

    workdir: Path
    flows_file: Path
    demo: int = 300
    seed: int = 7
    kafka_bootstrap: str | None = None
    topic_prefix: str = "dingdee."
    partitions: int = 3
    services: tuple[str, ...] = SERVICES
    env: dict[str, str] = field(default_factory=dict)
    service_env: dict[str, dict[str, str]] = field(default_factory=dict)
    dingtalk_args: tuple[str, ...] = ()

    kingdee_args: tuple[str, ...] = ()
    console: bool = False  # also start the web console (``make run`` does)
    console_env: dict[str, str] = field(default_factory=dict)  # extra DINGDEE_CONSOLE__* settings


async def start_sandbox(
    kind: str, workdir: Path, *args: str, timeout: float = 60.0
) -> tuple[ManagedProcess, str]:
    """Start ``python -m dingdee_sandbox.<kind>`` on 127.0.0.1 and any free port.

    Returns the process (logging to ``workdir/sandbox-<kind>.log``) and its base URL, once it has
    written its port file.

    Raises:
        RuntimeError: the sandbox exited or wrote no port within ``timeout`` seconds.
    """
    port_file = workdir / f"sandbox-{kind}.port"
    port_file.unlink(missing_ok=True)
    proc = ManagedProcess.python_module(
        f"sandbox-{kind}",
        f"dingdee_sandbox.{kind}",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--port-file",
        str(port_file),
        *args,
        log_path=workdir / f"sandbox-{kind}.log",
    )
    proc.start()
    deadline = time.monotonic() + timeout
    while not (port_file.exists() and port_file.read_text().strip()):
        if not proc.alive or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name} did not start:\n{proc.tail()}")
        await asyncio.sleep(0.1)
    return proc, f"http://127.0.0.1:{int(port_file.read_text().strip())}"


class Stack:
    """Start and stop the whole local pipeline; every part is a :class:`ManagedProcess`."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.workdir = config.workdir.absolute()
        self.flows_file = config.flows_file.absolute()
        self.broker: EmbeddedBroker | None = None
        self.bootstrap = config.kafka_bootstrap or os.environ.get(ENV_BOOTSTRAP) or ""
        self.processes: dict[str, ManagedProcess] = {}
        self.ops_ports: dict[str, int] = {}
        self.dingtalk_url = ""
        self.kingdee_url = ""
        self.topics = Topics(config.topic_prefix)
        # the console's local sign-in tokens: operator (printed by make run) and viewer
        self.console_token = secrets.token_urlsafe(24)
        self.console_viewer_token = secrets.token_urlsafe(24)
        self.console_session_secret = secrets.token_urlsafe(32)
        self.console_port = 0
        self.console_url = ""

    @property
    def kafka(self) -> KafkaSettings:
        return KafkaSettings(
            bootstrap_servers=self.bootstrap,
            topic_prefix=self.config.topic_prefix,
            partitions=self.config.partitions,
        )

    async def start(self) -> None:
        """Broker → topics → sandboxes → services; returns once every process answers HTTP."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.bootstrap:
            self.broker = EmbeddedBroker(log_path=self.workdir / "broker.log")
            await asyncio.to_thread(self.broker.start)
            self.bootstrap = self.broker.bootstrap_servers
        await provision(self.kafka)
        # both sandboxes at once (each Python process takes a second or two to answer); both
        # are registered before a failure of either is raised, so stop() ends them
        dingtalk, kingdee = await asyncio.gather(
            self._start_sandbox(
                "dingtalk",
                "--demo",
                str(self.config.demo),
                "--seed",
                str(self.config.seed),
                *self.config.dingtalk_args,
            ),
            self._start_sandbox("kingdee", *self.config.kingdee_args),
            return_exceptions=True,
        )
        if isinstance(dingtalk, BaseException):
            raise dingtalk
        if isinstance(kingdee, BaseException):
            raise kingdee
        self.dingtalk_url, self.kingdee_url = dingtalk, kingdee
        for name in self.config.services:
            self.start_service(name)
        if self.config.console:
            self.console_port = free_port()
            self.console_url = f"http://127.0.0.1:{self.console_port}"
            self.start_service("console")
        await asyncio.gather(*(self.wait_alive(name) for name in self.supervised))

    @property
    def supervised(self) -> tuple[str, ...]:
        """The processes ``make run`` restarts when they exit: the services and the console."""
        return (*self.config.services, *(("console",) if self.config.console else ()))

    @property
    def console_link(self) -> str:
        """The console's URL with the operator token (opened once, it becomes a cookie)."""
        return f"{self.console_url}/?token={self.console_token}"

    def _console_settings(self) -> dict[str, str]:
        """The console's environment: the local token sign-in, the services' ops ports."""
        services = {n: f"http://127.0.0.1:{self.ops_ports[n]}" for n in self.config.services}
        env = {
            "DINGDEE_CONSOLE__HOST": "127.0.0.1",
            "DINGDEE_CONSOLE__PORT": str(self.console_port),
            "DINGDEE_CONSOLE__AUTH": "token",
            "DINGDEE_CONSOLE__TOKEN": self.console_token,
            "DINGDEE_CONSOLE__VIEWER_TOKEN": self.console_viewer_token,
            # kept across restarts by the supervisor: a restarted console keeps its sessions
            "DINGDEE_CONSOLE__SESSION_SECRET": self.console_session_secret,
            "DINGDEE_CONSOLE__REFRESH_SECONDS": "3",
            "DINGDEE_CONSOLE__SERVICES": json.dumps(services),
        }
        env.update(self.config.console_env)
        return env

    async def _start_sandbox(self, name: str, *args: str) -> str:
        proc, url = await start_sandbox(name, self.workdir, *args)
        self.processes[proc.name] = proc
        return url

    def service_env(self, name: str) -> dict[str, str]:
        """The environment a service process is started with (settings only, as in Kubernetes)."""
        port = self.ops_ports.setdefault(name, free_port())
        env = {
            "DINGDEE_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            "DINGDEE_KAFKA__TOPIC_PREFIX": self.config.topic_prefix,
            "DINGDEE_KAFKA__PARTITIONS": str(self.config.partitions),
            "DINGDEE_FLOWS_FILE": str(self.flows_file),
            "DINGDEE_HTTP__HOST": "127.0.0.1",
            "DINGDEE_HTTP__PORT": str(port),
            "DINGDEE_TELEMETRY__LOG_FORMAT": "json",
            "OTEL_SERVICE_NAME": f"dingdee-{name}",
        }
        if name == "extractor":
            env["DINGDEE_DINGTALK__BASE_URL"] = self.dingtalk_url
            env["DINGDEE_EVENTS__BASE_URL"] = self.dingtalk_url  # used when events are enabled
            env["DINGDEE_POLL__INTERVAL_SECONDS"] = "5"
            # the sandbox meters nothing: a budget this large keeps the demo's 5 s polling
            demo_app = {
                "app_key": DEMO_APP.app_key,
                "app_secret": DEMO_APP.app_secret,
                "agent_id": DEMO_APP.agent_id,
            }
            env["DINGDEE_DINGTALK__APPS"] = json.dumps(
                {DEMO_APP.name: {**demo_app, "monthly_call_budget": 1_000_000_000}}
            )
        if name == "console":
            env.update(self._console_settings())
        if name == "loader":
            env["DINGDEE_KINGDEE__SERVER_URL"] = f"{self.kingdee_url}/k3cloud"
            env.update({f"DINGDEE_KINGDEE__{k}": v for k, v in _KINGDEE_DEMO.items()})
        env.update(self.config.env)
        env.update(self.config.service_env.get(name, {}))
        return env

    def start_service(self, name: str) -> ManagedProcess:
        """Start (or restart) one service as ``python -m dingdee_<name>`` (the console:
        ``python -m dingdee_ops.console``)."""
        proc = self.processes.get(name)
        if proc is None:
            proc = ManagedProcess.python_module(
                name,
                "dingdee_ops.console" if name == "console" else f"dingdee_{name}",
                env=self.service_env(name),
                log_path=self.workdir / f"{name}.log",
                cwd=self.workdir,
            )
            self.processes[name] = proc
        proc.start()
        return proc

    async def wait_alive(self, name: str, timeout: float = 90.0) -> None:
        await wait_http_ok(
            f"http://127.0.0.1:{self.ops_ports[name]}/healthz",
            timeout=timeout,
            process=self.processes[name],
            what=f"{name} /healthz",
        )

    async def wait_ready(self, name: str, timeout: float = 120.0) -> None:
        await wait_http_ok(
            f"http://127.0.0.1:{self.ops_ports[name]}/readyz",
            timeout=timeout,
            process=self.processes[name],
            what=f"{name} /readyz",
        )

    def kill(self, name: str) -> None:
        """SIGKILL one process, as a crashed pod dies."""
        self.processes[name].kill()

    async def stop(self) -> None:
        """Stop the services (SIGTERM, then SIGKILL; all at once, as independent pods stop),
        then the sandboxes, then the broker. Services a test started later with
        ``start_service`` (a fresh deploy, one by one) are stopped as well."""
        sandboxes = ("sandbox-kingdee", "sandbox-dingtalk")
        for names in ([n for n in self.processes if n not in sandboxes], sandboxes):
            procs = [self.processes[n] for n in names if n in self.processes]
            await asyncio.gather(*(asyncio.to_thread(proc.stop) for proc in procs))
        if self.broker is not None:
            await asyncio.to_thread(self.broker.stop)
            self.broker = None

    async def __aenter__(self) -> Stack:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- observation -------------------------------------------------------------------------

    async def sandbox_json(self, base: str, path: str, **params: Any) -> Any:
        async with httpx.AsyncClient(timeout=10.0) as client:
            response = await client.get(f"{base}{path}", params=params)
            response.raise_for_status()
            return response.json()

    async def expected_approvals(self) -> list[dict[str, Any]]:
        """The DingTalk sandbox's approved instances (COMPLETED + agree, biz_action NONE)."""
        data = await self.sandbox_json(self.dingtalk_url, "/_sandbox/expected")
        return list(data["expected"] if isinstance(data, dict) else data)

    async def kingdee_bills(self, form_id: str) -> list[dict[str, Any]]:
        data = await self.sandbox_json(self.kingdee_url, "/_sandbox/bills", form_id=form_id)
        return list(data["bills"])

    async def topic_counts(self) -> dict[str, int]:
        """Records written to each pipeline topic so far (sum of exact partition end offsets)."""
        t = self.topics
        names = {
            "extracted": t.approvals_raw,
            "transformed": t.bills_ready,
            "results": t.bills_result,
            "dlq.extractor": t.dlq("extractor"),
            "dlq.transformer": t.dlq("transformer"),
            "dlq.loader": t.dlq("loader"),
        }
        consumer = make_consumer(self.kafka, group_id=None)
        try:  # started inside: a caller's timeout may cancel the start, and it must be closed
            await consumer.start()
            tps = {label: await partitions_of(consumer, [topic]) for label, topic in names.items()}
            ends = await exact_end_offsets(consumer, [tp for group in tps.values() for tp in group])
        finally:
            await consumer.stop()
        return {label: sum(ends[tp] for tp in group) for label, group in tps.items()}
