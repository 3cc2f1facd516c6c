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
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live

from dingdee_dev.procs import ManagedProcess, Supervisor
from dingdee_dev.stack import Stack, StackConfig
from dingdee_dev.watch import Expectation, Progress, RunOptions, Watcher

__all__ = ["RunOptions", "main", "run"]

ROOT = Path(__file__).resolve().parents[4]


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
        _announce(stack, console)
        if on_started is not None:
            on_started(stack, supervisor)
        return await _watch(Watcher(stack, supervisor, options), stop, started, options, console)
    finally:
        supervisor.close()
        supervising.cancel()
        console.print("stopping …")
        await stack.stop()
        console.print("stopped cleanly.")


def _announce(stack: Stack, console: Console) -> None:
    """Where the parts of the started stack answer (the console with its local token)."""
    console.print(
        f"broker {stack.bootstrap} · DingTalk sandbox {stack.dingtalk_url} · "
        f"Kingdee sandbox {stack.kingdee_url}"
    )
    console.print(
        "ops ports: " + ", ".join(f"{k} :{v}" for k, v in sorted(stack.ops_ports.items()))
    )
    if stack.config.console:
        console.print(
            f"console {stack.console_link}", markup=False, highlight=False, soft_wrap=True
        )


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
