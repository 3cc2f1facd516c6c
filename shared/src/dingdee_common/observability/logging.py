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

__all__ = ["configure_logging", "get_logger", "library_log_level", "stdlib_handler"]


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


_service: dict[str, str] = {}  # set by configure_logging: records from other threads carry it too


def _add_service(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if "service" in _service:
        event_dict.setdefault("service", _service["service"])
    return event_dict


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        _add_service,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_trace_ids,
    ]


def stdlib_handler(settings: TelemetrySettings) -> logging.Handler:
    """A stderr handler rendering standard-library records like our own (JSON by default)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *_shared_processors()],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                _renderer(settings),
            ],
        )
    )
    return handler


def library_log_level(settings: TelemetrySettings) -> int:
    """Libraries log at WARNING and above unless our own level is stricter."""
    return max(int(logging.getLevelName(settings.log_level)), logging.WARNING)


def configure_logging(service: str, settings: TelemetrySettings) -> None:
    """Configure structlog and the stdlib root logger. Safe to call more than once."""
    level = logging.getLevelName(settings.log_level)
    _service["service"] = service
    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.processors.format_exc_info,
            _renderer(settings),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
    logging.basicConfig(
        level=library_log_level(settings), handlers=[stdlib_handler(settings)], force=True
    )


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
