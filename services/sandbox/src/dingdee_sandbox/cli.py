"""What both sandboxes' command lines share: the typer app and the listening options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["Host", "Port", "PortFile", "command_line"]

Host = Annotated[str, typer.Option(help="address to listen on")]
Port = Annotated[int, typer.Option(help="0: any free port (see --port-file)")]
PortFile = Annotated[Path | None, typer.Option(help="where to write the bound port")]


def command_line(name: str) -> typer.Typer:
    """A one-command typer app; docstrings are help text, re-wrapped (markdown)."""
    return typer.Typer(
        name=name,
        add_completion=False,
        rich_markup_mode="markdown",
        pretty_exceptions_show_locals=False,
    )
