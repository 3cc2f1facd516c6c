"""Spans are recorded only where they go somewhere; context flows through either way."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
from opentelemetry import trace
from dingdee_common.kafka import headers as hdr
from dingdee_common.observability.tracing import configure_tracing, consume_span, recording
provider = configure_tracing("transformer")
assert recording() is (provider is not None)
incoming = [("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]
with consume_span("approvals.raw", incoming, partition=0, offset=1, group="g") as span:
    out = hdr.get(hdr.build("petty-cash", "pi-1"), "traceparent")
    recording = span.is_recording()
print(type(provider).__name__, recording, out, flush=True)
import os
os._exit(0)  # no span export at exit: nothing listens on the endpoint
"""


@pytest.mark.parametrize(
    ("endpoint", "expected_provider", "recording"),
    [(None, "NoneType", "False"), ("http://127.0.0.1:9", "TracerProvider", "True")],
)
def test_spans_are_recorded_only_with_an_exporter(
    endpoint: str | None, expected_provider: str, recording: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    if endpoint:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
        env["OTEL_BSP_SCHEDULE_DELAY"] = "60000"  # nothing is sent before the process ends
    result = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", SCRIPT],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    provider, is_recording, traceparent = result.stdout.split()
    assert (provider, is_recording) == (expected_provider, recording)
    # The produced record continues the incoming trace in both cases.
    assert traceparent.split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
    if not endpoint:
        assert traceparent.split("-")[2] == "b7ad6b7169203331", "the parent's context, unchanged"
