"""``dingdee-dev run`` (what ``make run`` calls): the real pipeline on the embedded default.

Starts the embedded broker (unless ``DINGDEE_KAFKA__BOOTSTRAP_SERVERS`` is set), both sandboxes
seeded with demo approvals, the three services and the web console (its URL with a local token is
printed); supervises the services (one that exits is
restarted with backoff, as Kubernetes would) and shows live progress until every approved demo
approval is a bill in the Kingdee sandbox, prints a summary, and keeps showing progress until
Ctrl-C. A part that does not answer is shown as such; it never stops the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from dingdee_common.settings import RetrySettings
from dingdee_dev.procs import ManagedProcess, Supervisor
from dingdee_dev.stack import Stack, StackConfig
from dingdee_sandbox.demo_org import DEPARTMENTS, PROCESS_CODES

__all__ = ["Expectation", "Progress", "RunOptions", "Watcher", "expected_bills", "main", "run"]

ROOT = Path(__file__).resolve().parents[4]
PETTY_CASH_FORM = "ER_ExpReimbursement"
DEPARTMENT_FORM = "BD_Department"
T = TypeVar("T")
# A service that exits is started again after 0-1 s, then 0-2 s, … up to 0-30 s (full jitter).
RESTART_BACKOFF = RetrySettings(initial_backoff_seconds=1.0, max_backoff_seconds=30.0)


@dataclass(frozen=True)
class Expectation:
    """Bill numbers the demo must end with, per Kingdee form, read from DingTalk independently."""

    by_form: dict[str, set[str]]

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.by_form.values())


async def _form_value(client: httpx.AsyncClient, base: str, pid: str, label: str) -> str:
    """A form value read through the sandbox's control API (not metered, not rate limited)."""
    response = await client.get(f"{base}/_sandbox/instances/{pid}")
    response.raise_for_status()
    for component in response.json()["process_instance"]["form_component_values"]:
        if component.get("name") == label:
            return str(component["value"])
    raise KeyError(f"{pid} has no form component {label!r}")


async def expected_bills(stack: Stack) -> Expectation:
    """Petty-cash bills are ``"BYJ" + business_id``; departments are numbered by 部门编码."""
    approved = await stack.expected_approvals()
    petty = {
        "BYJ" + a["business_id"]
        for a in approved
        if a["process_code"] == PROCESS_CODES["petty-cash"]
    }
    depts: set[str] = set()
    async with httpx.AsyncClient(timeout=10.0) as client:
        for a in approved:
            if a["process_code"] == PROCESS_CODES["department-sync"]:
                depts.add(
                    await _form_value(
                        client, stack.dingtalk_url, a["process_instance_id"], "部门编码"
                    )
                )
    return Expectation({PETTY_CASH_FORM: petty, DEPARTMENT_FORM: depts})


async def loaded_bills(stack: Stack, expectation: Expectation) -> dict[str, set[str]]:
    """Bill numbers present in the Kingdee sandbox per form (seeded base data left out)."""
    seeded = {d.kingdee_number for d in DEPARTMENTS}
    loaded: dict[str, set[str]] = {}
    for form in expectation.by_form:
        numbers = {str(b["number"]) for b in await stack.kingdee_bills(form)}
        loaded[form] = numbers - seeded if form == DEPARTMENT_FORM else numbers
    return loaded


@dataclass(frozen=True)
class RunOptions:
    """How ``run`` watches: ``dingdee-dev run``'s flags."""

    timeout: float = 900.0  # give up when not every bill is loaded by then
    poll_timeout: float = 3.0  # a part that takes longer to answer is "not answering"
    interval: float = 1.0
    exit_when_done: bool = False
    restart_backoff: RetrySettings = field(default_factory=lambda: RESTART_BACKOFF)


@dataclass
class Progress:
    """One look at the pipeline: counts (the last known when a part does not answer) and parts."""

    elapsed: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    loaded: int | None = None
    expected: int | None = None
    parts: dict[str, str] = field(default_factory=dict)  # part → state ("ok", "not answering …")
    restarts: dict[str, int] = field(default_factory=dict)  # supervised service → restarts
    done: bool = False

    @property
    def dead_letters(self) -> int:
        return sum(v for k, v in self.counts.items() if k.startswith("dlq."))

    def figures(self) -> list[tuple[str, str]]:
        def shown(value: int | None) -> str:
            return "?" if value is None else str(value)

        counts = self.counts
        return [
            ("extracted", shown(counts.get("extracted") if counts else None)),
            ("transformed", shown(counts.get("transformed") if counts else None)),
            ("loaded (Kingdee)", shown(self.loaded)),
            ("expected", shown(self.expected)),
            ("dead-lettered", shown(self.dead_letters if counts else None)),
        ]

    def line(self) -> str:
        """One line for a log or a pipe: the figures, then every part's state."""
        figures = " · ".join(f"{name} {value}" for name, value in self.figures())
        parts = " · ".join(
            f"{part} {state}"
            + (f" (restarts {self.restarts[part]})" if part in self.restarts else "")
            for part, state in self.parts.items()
        )
        return f"[{self.elapsed:5.0f}s] {figures} | {parts}"

    def table(self) -> Group:
        """The live view: the figures, then one row per part with its state and restarts."""
        status = "all bills loaded; Ctrl-C stops" if self.done else "loading"
        figures = Table(title=f"dingdee — local pipeline ({self.elapsed:5.0f}s, {status})")
        parts = Table()
        for name, _ in self.figures():
            figures.add_column(name, justify="right")
        figures.add_row(*(value for _, value in self.figures()))
        for col in ("part", "state", "restarts"):
            parts.add_column(col)
        for part, state in self.parts.items():
            style = "" if state in ("ok", "ready") else "yellow"
            restarts = str(self.restarts[part]) if part in self.restarts else "-"
            parts.add_row(part, f"[{style}]{state}[/]" if style else state, restarts)
        return Group(figures, parts)

    def key(self) -> tuple[Any, ...]:
        """What a change is: anything but the elapsed time."""
        return (
            sorted(self.counts.items()),
            self.loaded,
            self.expected,
            list(self.parts.items()),
            sorted(self.restarts.items()),
            self.done,
        )


def _failure(exc: BaseException) -> str:
    """What a part that failed to answer is shown as."""
    if isinstance(exc, (TimeoutError, httpx.TimeoutException)):
        return "not answering (timeout)"
    if isinstance(exc, httpx.ConnectError):
        return "not answering (connection refused)"
    if isinstance(exc, httpx.HTTPStatusError):
        return f"answering HTTP {exc.response.status_code}"
    return f"not answering ({type(exc).__name__})"


class Watcher:
    """Polls every part of the stack, each under ``poll_timeout``; a poll never raises."""

    def __init__(self, stack: Stack, supervisor: Supervisor, options: RunOptions) -> None:
        self.stack = stack
        self.supervisor = supervisor
        self.options = options
        self.expectation: Expectation | None = None
        self._expecting: asyncio.Task[Expectation] | None = None
        self.progress = Progress()

    async def _timed(self, what: str, call: Callable[[], Awaitable[T]]) -> T | None:
        """``call()``'s result, or ``None`` with ``what``'s state set to why it did not answer."""
        try:
            result = await asyncio.wait_for(call(), self.options.poll_timeout)
        except Exception as exc:  # noqa: BLE001 - any failure of a part is shown, never raised
            self.progress.parts[what] = _failure(exc)
            return None
        self.progress.parts[what] = "ok"
        return result

    async def poll(self, elapsed: float) -> Progress:
        progress = self.progress
        progress.elapsed = elapsed
        progress.parts = dict.fromkeys(("Kafka", "DingTalk", "Kingdee"), "…")
        await asyncio.gather(self._poll_kafka(), self._poll_dingtalk(), self._poll_kingdee())
        await self._poll_services()
        return progress

    async def _poll_kafka(self) -> None:
        counts = await self._timed("Kafka", self.stack.topic_counts)
        if counts is not None:
            self.progress.counts = counts

    async def _poll_dingtalk(self) -> None:
        await self._timed(
            "DingTalk",
            lambda: self.stack.sandbox_json(self.stack.dingtalk_url, "/_sandbox/healthz"),
        )
        if self.expectation is not None:
            return
        # Read once, in the background: it takes a request per department approval.
        task = self._expecting
        if task is None:
            self._expecting = asyncio.create_task(expected_bills(self.stack))
        elif task.done():
            self._expecting = None  # read again at the next poll if it failed
            failed = task.exception()
            if failed is not None:
                self.progress.parts["DingTalk"] = f"expected set not read: {_failure(failed)}"
                return
            self.expectation = task.result()
            self.progress.expected = self.expectation.total

    async def _poll_kingdee(self) -> None:
        expectation = self.expectation
        if expectation is None:
            await self._timed(
                "Kingdee",
                lambda: self.stack.sandbox_json(self.stack.kingdee_url, "/_sandbox/healthz"),
            )
            return
        loaded = await self._timed("Kingdee", lambda: loaded_bills(self.stack, expectation))
        if loaded is None:
            return
        self.progress.loaded = sum(len(v & expectation.by_form[f]) for f, v in loaded.items())
        if all(loaded[f] == expectation.by_form[f] for f in expectation.by_form):
            self.progress.done = True

    async def _poll_services(self) -> None:
        now = time.monotonic()
        readiness = await asyncio.gather(
            *(self._readiness(name) for name in self.supervisor.processes)
        )
        for name, ready in zip(self.supervisor.processes, readiness, strict=True):
            state = self.supervisor.states[name]
            self.progress.restarts[name] = state.restarts
            pending = state.restart_at is not None
            self.progress.parts[name] = state.describe(now) if pending else ready

    async def _readiness(self, name: str) -> str:
        url = f"http://127.0.0.1:{self.stack.ops_ports[name]}/readyz"
        try:
            async with httpx.AsyncClient(timeout=self.options.poll_timeout) as client:
                response = await client.get(url)
        except httpx.HTTPError as exc:
            return _failure(exc)
        if response.is_success:
            return "ready"
        with contextlib.suppress(ValueError):
            return f"not ready: {response.json().get('reason')}"
        return f"not ready (HTTP {response.status_code})"

    def close(self) -> None:
        if self._expecting is not None:
            self._expecting.cancel()


def _lost(stack: Stack) -> ManagedProcess | None:
    """A sandbox that exited: its state was in memory, so the run cannot go on."""
    for name, proc in stack.processes.items():
        if name.startswith("sandbox-") and not proc.alive:
            return proc
    return None


class _Display:
    """A live table on a terminal; one line per change otherwise (a pipe, a log file, a test)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._live: Live | None = None
        self._last: tuple[Any, ...] | None = None
        if console.is_terminal:
            self._live = Live(console=console, refresh_per_second=2, transient=False)
            self._live.start()

    def show(self, progress: Progress) -> None:
        if self._live is not None:
            self._live.update(progress.table())
            return
        key = progress.key()
        if key != self._last:
            self._last = key
            self.console.print(progress.line(), markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()


async def run(
    config: StackConfig,
    options: RunOptions,
    console: Console,
    stop: asyncio.Event,
    on_started: Callable[[Stack, Supervisor], None] | None = None,
) -> int:
    """Start the stack, supervise and watch it until ``stop`` (or done with ``exit_when_done``).

    Returns 0 when stopped or done, 1 when the bills were not all loaded within ``timeout`` or a
    sandbox exited. ``on_started`` sees the running stack and its supervisor (the tests' hook).
    """
    stack = Stack(config)
    console.print(f"[bold]dingdee[/] starting the local stack (logs in {config.workdir}) …")
    started = time.monotonic()
    try:
        await stack.start()
    except (RuntimeError, TimeoutError, OSError) as exc:
        console.print(f"[red]the local stack did not start[/]: {exc}")
        await stack.stop()
        return 1
    supervisor = Supervisor(
        {name: stack.processes[name] for name in stack.supervised}, options.restart_backoff
    )
    supervising = asyncio.create_task(supervisor.run())
    try:
        console.print(
            f"broker {stack.bootstrap} · DingTalk sandbox {stack.dingtalk_url} · "
            f"Kingdee sandbox {stack.kingdee_url}"
        )
        console.print(
            "ops ports: " + ", ".join(f"{k} :{v}" for k, v in sorted(stack.ops_ports.items()))
        )
        if config.console:
            console.print(
                f"console {stack.console_link}", markup=False, highlight=False, soft_wrap=True
            )
        if on_started is not None:
            on_started(stack, supervisor)
        return await _watch(Watcher(stack, supervisor, options), stop, started, options, console)
    finally:
        supervisor.close()
        supervising.cancel()
        console.print("stopping …")
        await stack.stop()
        console.print("stopped cleanly.")


async def _watch(
    watcher: Watcher, stop: asyncio.Event, started: float, options: RunOptions, console: Console
) -> int:
    """Show progress until ``stop``; print the summary once every expected bill is loaded."""
    display = _Display(console)
    summarised = False
    try:
        while not stop.is_set():
            progress = await watcher.poll(time.monotonic() - started)
            display.show(progress)
            if progress.done and not summarised:
                summarised = True
                console.print(_summary(watcher.expectation or Expectation({}), progress))
                if options.exit_when_done:
                    return 0
                console.print("Pipeline keeps running; press Ctrl-C to stop everything.")
            lost = _lost(watcher.stack)
            if lost is not None:
                console.print(f"[red]{lost.name} exited[/]:\n{lost.tail()}", markup=False)
                return 1
            if not summarised and progress.elapsed > options.timeout:
                console.print(f"[red]not all bills loaded after {options.timeout:.0f}s[/]")
                return 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), options.interval)
        return 0
    finally:
        watcher.close()
        display.close()


def _summary(expectation: Expectation, progress: Progress) -> str:
    return (
        f"[green bold]All {expectation.total} approved demo approvals are bills in the Kingdee "
        f"sandbox[/] after {progress.elapsed:.1f}s — "
        + ", ".join(f"{form}: {len(nums)}" for form, nums in expectation.by_form.items())
        + f"; {progress.counts.get('extracted', 0)} records on approvals.raw (snapshots, and "
        "any claim parked until its master data arrived, put back), "
        f"{progress.dead_letters} dead-lettered."
    )


cli = typer.Typer(
    name="dingdee-dev",
    help="dingdee local development: the whole pipeline on an embedded broker and the sandboxes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@cli.callback()
def _commands() -> None:
    """Keeps ``run`` a sub-command (typer would make a lone command the program itself)."""


@cli.command("run")
def run_command(
    demo: Annotated[int, typer.Option(help="petty-cash approvals to seed")] = 300,
    workdir: Annotated[
        Path | None, typer.Option(help="logs and state (default: .run in the current directory)")
    ] = None,
    flows: Annotated[Path, typer.Option(help="flows file")] = ROOT / "config" / "flows.yaml",
    timeout: Annotated[float, typer.Option(help="give up after this long")] = 900.0,
    poll_timeout: Annotated[
        float,
        typer.Option(
            help="seconds a part may take to answer a progress poll before it shows as not "
            "answering"
        ),
    ] = 3.0,
    exit_when_done: Annotated[
        bool, typer.Option("--exit-when-done", help="stop once every bill is loaded")
    ] = False,
) -> None:
    """Run the whole local pipeline with live progress."""
    config = StackConfig(
        workdir=workdir or Path.cwd() / ".run", flows_file=flows, demo=demo, console=True
    )
    options = RunOptions(timeout=timeout, poll_timeout=poll_timeout, exit_when_done=exit_when_done)
    raise typer.Exit(asyncio.run(_main(config, options)))


def main() -> None:
    cli()


async def _main(config: StackConfig, options: RunOptions) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return await run(config, options, Console(), stop)


if __name__ == "__main__":
    main()
