"""What both sandboxes' command lines share: the one-command typer app, the listening options
(``--host``, ``--port``, ``--port-file``), refusing a bad value with exit code 2, and serving.

Each sandbox writes only a function that takes its own options and builds its aiohttp app;
:func:`sandbox_command` makes it a command whose options are the listening ones followed by the
function's, with its docstring as help, and the console script's ``main``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from aiohttp import web

from dingdee_common.web import serve_until_stopped

__all__ = ["sandbox_command"]

Host = Annotated[str, typer.Option(help="address to listen on")]
Port = Annotated[int, typer.Option(help="0: any free port (see --port-file)")]
PortFile = Annotated[Path | None, typer.Option(help="where to write the bound port")]


def _listening(port: int) -> list[inspect.Parameter]:
    keyword = inspect.Parameter.KEYWORD_ONLY
    return [
        inspect.Parameter("host", keyword, default="127.0.0.1", annotation=Host),
        inspect.Parameter("port", keyword, default=port, annotation=Port),
        inspect.Parameter("port_file", keyword, default=None, annotation=PortFile),
    ]


def sandbox_command(
    module: str, port: int, build: Callable[..., web.Application]
) -> tuple[typer.Typer, Callable[[], None]]:
    """``python -m module`` and its console script (``dingdee_sandbox.kingdee`` →
    ``dingdee-sandbox-kingdee``): ``build(**its options)`` makes the app, served on ``--host`` and
    ``--port`` until SIGTERM/SIGINT (``listening on http://HOST:PORT``, the bound port written to
    ``--port-file``); a ``ValueError`` from ``build`` (pydantic's validation errors are ones) is
    printed after ``module:`` and exits 2. Returns the typer app and the script's ``main``."""
    prog = module.replace("_", "-").replace(".", "-")
    app = typer.Typer(
        name=prog,
        add_completion=False,
        rich_markup_mode="markdown",  # docstrings are help text, re-wrapped
        pretty_exceptions_show_locals=False,
    )

    def serve(**options: Any) -> None:
        host, bound, port_file = options.pop("host"), options.pop("port"), options.pop("port_file")
        try:
            web_app = build(**options)
        except ValueError as exc:
            typer.echo(f"{module}: {exc}", err=True)
            raise typer.Exit(2) from None
        asyncio.run(serve_until_stopped(web_app, host, bound, port_file))

    given = inspect.signature(build, eval_str=True).parameters.values()
    own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in given]
    serve.__signature__ = inspect.Signature([*_listening(port), *own])  # type: ignore[attr-defined]
    serve.__doc__ = build.__doc__
    app.command(name="serve")(serve)

    def main() -> None:
        app(prog_name=prog)

    main.__doc__ = f"The ``{prog}`` command (``--help`` lists its options)."
    return app, main
