"""Library records (stdlib logging) come out as the same JSON lines as our own."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator

import pytest
import structlog

from dingdee_common.observability.logging import configure_logging, get_logger
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
