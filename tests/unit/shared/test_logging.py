"""Library records (stdlib logging) come out as the same JSON lines as our own."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator

import pytest
import structlog

from dingdee_common.observability.logging import RepeatFilter, configure_logging, get_logger
from dingdee_common.settings import TelemetrySettings


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """configure_logging binds capsys's stderr; later tests must not write to it once closed."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)
    structlog.contextvars.clear_contextvars()


def _lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_library_warnings_and_tracebacks_are_json(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("loader", TelemetrySettings(log_format="json", log_level="INFO"))
    library = logging.getLogger("aiokafka.consumer.group_coordinator")
    library.info("below the library level: dropped")
    library.warning("Heartbeat failed for group %s because it is rebalancing", "loader")
    try:
        raise AssertionError("[('t', [0, 2])] != [('t', [0, 2, 1])]")
    except AssertionError:
        library.exception("Unexpected error in coordinator routine")
    get_logger("ours").info("loader.batch.written", bills=3)
    # aiokafka's consumer thread under faust: no context variables there, the service still shows
    thread = threading.Thread(target=library.warning, args=("from another thread",))
    thread.start()
    thread.join()

    lines = _lines(capsys.readouterr().err)
    assert [line["event"] for line in lines] == [
        "Heartbeat failed for group loader because it is rebalancing",
        "Unexpected error in coordinator routine",
        "loader.batch.written",
        "from another thread",
    ]
    warning, error, ours, threaded = lines
    assert threaded["service"] == "loader"
    assert warning["level"] == "warning" and warning["service"] == "loader"
    assert warning["logger"] == "aiokafka.consumer.group_coordinator"
    assert "timestamp" in warning
    assert error["level"] == "error"
    assert "AssertionError" in str(error["exception"]) and "Traceback" in str(error["exception"])
    assert ours["bills"] == 3 and ours["service"] == "loader"


def test_a_library_repeating_itself_is_logged_once_per_window_with_the_count(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The broker unreachable: aiokafka's fetch error for every node and attempt is one line."""
    configure_logging("loader", TelemetrySettings(log_format="json", log_level="INFO"))
    fetcher = logging.getLogger("aiokafka.consumer.fetcher")
    for attempt in range(120):
        fetcher.error("Failed fetch messages from %s: %s", attempt % 3, "[Error 7] timed out")
    fetcher.warning("Fetch offset %s is out of range", 7)  # another kind: its own line
    get_logger("ours").warning("loader.kafka.unavailable", attempt=1)  # ours: never held back
    get_logger("ours").warning("loader.kafka.unavailable", attempt=2)
    events = [line["event"] for line in _lines(capsys.readouterr().err)]
    assert events == [
        "Failed fetch messages from 0: [Error 7] timed out",
        "Fetch offset 7 is out of range",
        "loader.kafka.unavailable",
        "loader.kafka.unavailable",
    ]


def test_the_next_record_after_the_window_says_how_many_were_held_back() -> None:
    held = RepeatFilter(window=5.0)

    def record(at: float, node: int) -> logging.LogRecord:
        r = logging.LogRecord(
            "aiokafka", logging.ERROR, __file__, 1, "fetch from %s: 100%%", (node,), None
        )
        r.created = at
        return r

    assert held.filter(record(100.0, 1))
    assert not any(held.filter(record(100.0 + i / 10, i)) for i in range(1, 41))
    late = record(106.0, 2)
    assert held.filter(late)
    assert late.getMessage() == "fetch from 2: 100% [40 more like this in the last 6s]"
    assert held.filter(record(111.5, 3))  # nothing held since: no count
    assert not held.filter(record(112.0, 4))
