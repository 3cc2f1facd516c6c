"""Structured JSON logging (structlog): one object per line with service, trace id and span id.

Libraries log through the standard library (aiokafka, faust, httpx); their records go through the
same processors and renderer, so the stream stays one JSON object per line, with the library's
logger name and any traceback as fields.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from opentelemetry import trace

from dingdee_common.settings import TelemetrySettings

__all__ = ["RepeatFilter", "configure_logging", "get_logger"]

REPEAT_WINDOW_SECONDS = 5.0


class RepeatFilter(logging.Filter):
    """A library's same message at most once per ``window`` seconds, then how many were held back.

    While the broker is unreachable aiokafka logs the same few errors for every fetch, heartbeat
    and metadata attempt, over a hundred lines a second per service; the first says what is wrong,
    the rest drowned the services' own ``*.unavailable`` lines. Records are keyed by logger and
    message template (``record.msg`` before its arguments), so "Failed fetch messages from 1"
    and "… from 2" are one kind. The next record of a kind after its window carries the count.
    """

    def __init__(self, window: float = REPEAT_WINDOW_SECONDS) -> None:
        super().__init__()
        self.window = window
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}  # kind → (last shown, held)

    def filter(self, record: logging.LogRecord) -> bool:
        kind = (record.name, str(record.msg))
        shown = self._seen.get(kind)
        if shown is not None and record.created - shown[0] < self.window:
            self._seen[kind] = (shown[0], shown[1] + 1)
            return False
        if shown is not None and shown[1]:
            held = f" [{shown[1]} more like this in the last {record.created - shown[0]:.0f}s]"
            record.msg = f"{record.msg}{held.replace('%', '%%') if record.args else held}"
        if len(self._seen) > 10_000:  # a bound on kinds, for templates that embed values
            self._seen.clear()
        self._seen[kind] = (record.created, 0)
        return True


def _add_trace_ids(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        event_dict["trace_id"] = format(span.trace_id, "032x")
        event_dict["span_id"] = format(span.span_id, "016x")
    return event_dict


def _renderer(settings: TelemetrySettings) -> Any:
    use_console = settings.log_format == "console" or (
        settings.log_format == "auto" and sys.stderr.isatty()
    )
    return structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()


def configure_logging(service: str, settings: TelemetrySettings) -> None:
    """Configure structlog and the stdlib root logger. Safe to call more than once.

    The root logger's handler renders library records (WARNING and up, or stricter) through the
    same processors; ``service`` is added by a processor rather than a context variable, so records
    logged on other threads (faust's consumer thread) carry it too.
    """

    def add_service(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> Any:
        event_dict.setdefault("service", service)
        return event_dict

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_service,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_trace_ids,
    ]
    tail: list[Any] = [structlog.processors.format_exc_info, _renderer(settings)]
    level = logging.getLevelName(settings.log_level)
    structlog.configure(
        processors=[*shared, *tail],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
        )
    )
    handler.addFilter(RepeatFilter())
    logging.basicConfig(level=max(level, logging.WARNING), handlers=[handler], force=True)


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
