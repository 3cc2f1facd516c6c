"""``dingdee-dev run`` (what ``make run`` calls): the real pipeline on the embedded default.

Starts the embedded broker (unless ``DINGDEE_KAFKA__BOOTSTRAP_SERVERS`` is set), both sandboxes
seeded with demo approvals, and the three services; shows live progress until every approved demo
approval is a bill in the Kingdee sandbox, prints a summary, and keeps running until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.live import Live
from rich.table import Table

from dingdee_common.devstack import Stack, StackConfig

__all__ = ["Expectation", "expected_bills", "main"]

ROOT = Path(__file__).resolve().parents[3]
PETTY_CASH_FORM = "ER_ExpReimbursement"
DEPARTMENT_FORM = "BD_Department"


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
    from dingdee_sandbox.demo_org import PROCESS_CODES

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
    from dingdee_sandbox.demo_org import DEPARTMENTS

    seeded = {d.kingdee_number for d in DEPARTMENTS}
    loaded: dict[str, set[str]] = {}
    for form in expectation.by_form:
        numbers = {str(b["number"]) for b in await stack.kingdee_bills(form)}
        loaded[form] = numbers - seeded if form == DEPARTMENT_FORM else numbers
    return loaded


def _table(counts: dict[str, int], loaded: int, expected: int, elapsed: float) -> Table:
    table = Table(title=f"dingdee — local pipeline ({elapsed:5.0f}s)", show_lines=False)
    for col in ("extracted", "transformed", "loaded (Kingdee)", "expected", "dead-lettered"):
        table.add_column(col, justify="right")
    dead = sum(v for k, v in counts.items() if k.startswith("dlq."))
    table.add_row(
        str(counts.get("extracted", 0)),
        str(counts.get("transformed", 0)),
        str(loaded),
        str(expected),
        str(dead),
    )
    return table


async def _run(args: argparse.Namespace, console: Console) -> int:
    workdir, flows = args.workdir, args.flows
    config = StackConfig(workdir=workdir, flows_file=flows, demo=args.demo)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stack = Stack(config)
    console.print(f"[bold]dingdee[/] starting the local stack (logs in {workdir}) …")
    started = time.monotonic()
    async with stack:
        console.print(
            f"broker {stack.bootstrap} · DingTalk sandbox {stack.dingtalk_url} · "
            f"Kingdee sandbox {stack.kingdee_url}"
        )
        console.print(
            "ops ports: " + ", ".join(f"{k} :{v}" for k, v in sorted(stack.ops_ports.items()))
        )
        expectation = await expected_bills(stack)
        done_at = await _watch(stack, expectation, stop, started, args, console)
        if done_at is None:
            return 0 if stop.is_set() else 1
        if not args.exit_when_done:
            console.print("Pipeline keeps running; press Ctrl-C to stop everything.")
            await stop.wait()
        console.print("stopping …")
    console.print("stopped cleanly.")
    return 0


async def _watch(
    stack: Stack,
    expectation: Expectation,
    stop: asyncio.Event,
    started: float,
    args: argparse.Namespace,
    console: Console,
) -> float | None:
    """Show progress until every expected bill is loaded; return the time it took."""
    with Live(console=console, refresh_per_second=2, transient=False) as live:
        while not stop.is_set():
            counts = await stack.topic_counts()
            loaded = await loaded_bills(stack, expectation)
            n_loaded = sum(len(v & expectation.by_form[f]) for f, v in loaded.items())
            elapsed = time.monotonic() - started
            live.update(_table(counts, n_loaded, expectation.total, elapsed))
            if all(loaded[f] == expectation.by_form[f] for f in expectation.by_form):
                counts = await stack.topic_counts()
                live.update(_table(counts, n_loaded, expectation.total, elapsed))
                live.stop()
                _summary(console, expectation, counts, elapsed)
                return elapsed
            for name, proc in stack.processes.items():
                if not proc.alive:
                    console.print(f"[red]{name} exited[/]:\n{proc.tail()}")
                    return None
            if elapsed > args.timeout:
                console.print(f"[red]not all bills loaded after {args.timeout:.0f}s[/]")
                return None
            await asyncio.sleep(1.0)
    return None


def _summary(
    console: Console, expectation: Expectation, counts: dict[str, int], elapsed: float
) -> None:
    console.print(
        f"[green bold]All {expectation.total} approved demo approvals are bills in the Kingdee "
        f"sandbox[/] after {elapsed:.1f}s — "
        + ", ".join(f"{form}: {len(nums)}" for form, nums in expectation.by_form.items())
        + f"; {counts.get('extracted', 0)} snapshots extracted, "
        f"{sum(v for k, v in counts.items() if k.startswith('dlq.'))} dead-lettered."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dingdee-dev", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the whole local pipeline with live progress")
    run.add_argument("--demo", type=int, default=300, help="petty-cash approvals to seed")
    run.add_argument("--workdir", type=Path, default=Path.cwd() / ".run", help="logs and state")
    run.add_argument("--flows", type=Path, default=ROOT / "config" / "flows.yaml")
    run.add_argument("--timeout", type=float, default=900.0, help="give up after this long")
    run.add_argument("--exit-when-done", action="store_true", help="stop once every bill is loaded")
    args = parser.parse_args(argv)
    return asyncio.run(_run(args, Console()))


if __name__ == "__main__":
    sys.exit(main())
