"""``dingdee backfill``: read one flow's history from a start date, chunked, resumable, beside live
polling.

It runs the extractor's own code (:func:`dingdee_extractor.runner.run`) with the extractor's
settings (``DINGDEE_*``), in this process; the service image carries no CLI library, so the
command line lives here. Progress is checkpointed under ``backfill:<flow>`` after every chunk
whose snapshots were acknowledged: a killed backfill resumes where it stopped.

Exit codes: 0 done; 130 stopped early (SIGTERM/SIGINT); 1 fatal; 2 bad arguments or settings.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

import typer
from rich.progress import Progress

from dingdee_extractor.backfill import BackfillArgs
from dingdee_extractor.runner import run

__all__ = ["HELP", "backfill"]

_DAY = ["%Y-%m-%d"]
HELP = (  # one line a paragraph: typer keeps a docstring's line breaks
    "Read one flow's history, chunked and resumable, beside live polling.\n\n"
    "Runs the extractor's code with its DINGDEE_* settings. Progress is checkpointed under "
    "backfill:FLOW after every acknowledged chunk: a killed backfill resumes where it stopped.\n\n"
    "Exit codes: 0 done, 130 stopped early, 1 fatal, 2 bad arguments or settings."
)


def backfill(
    flow: Annotated[str, typer.Option(help="flow id from flows.yaml")],
    start: Annotated[
        datetime, typer.Option("--from", formats=_DAY, help="first day to read (flow timezone)")
    ],
    end: Annotated[
        datetime | None,
        typer.Option("--to", formats=_DAY, help="first day not to read [default: now]"),
    ] = None,
    chunk_days: Annotated[float, typer.Option(min=0.001, help="days per listids window")] = 1.0,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow/--no-follow",
            help="after the history, keep re-fetching its open instances until they finish",
        ),
    ] = True,
) -> None:
    """Read one flow's history (:data:`HELP`, the module docstring)."""
    args = BackfillArgs(
        flow=flow,
        start=start.date(),
        end=end.date() if end else None,
        chunk_days=chunk_days,
        no_follow=not follow,
    )
    with Progress(transient=False) as bar:
        task = bar.add_task(f"backfill {flow}", total=None)

        def shown(done_ms: int, total_ms: int) -> None:
            bar.update(task, completed=done_ms, total=total_ms)

        code = asyncio.run(run(args, shown))
    raise typer.Exit(code)
