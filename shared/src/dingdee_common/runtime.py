"""Service lifecycle helpers for ``__main__`` modules (STYLE §9)."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from typing import TypeVar

from pydantic import ValidationError

__all__ = ["install_stop_handlers", "settings_or_exit"]

T = TypeVar("T")


def settings_or_exit(factory: Callable[[], T], service: str) -> T:
    """Build settings; on a validation error print one line per problem and exit with code 2."""
    try:
        return factory()
    except ValidationError as exc:
        for err in exc.errors():
            where = "__".join(str(p) for p in err["loc"]).upper()
            print(f"{service}: bad setting DINGDEE_{where}: {err['msg']}", file=sys.stderr)
        raise SystemExit(2) from exc


def install_stop_handlers(stop: asyncio.Event) -> None:
    """SIGTERM/SIGINT request a clean stop; a second SIGINT exits at once."""
    loop = asyncio.get_running_loop()

    def _request() -> None:
        if stop.is_set():
            raise SystemExit(130)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _request)
