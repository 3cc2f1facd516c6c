"""faust's stall detector in the transformer: quiet while nothing is wrong, loud on a real stall.

The detector (faust's commit-livelock timer, every 2.5 × ``broker_commit_interval``) checks every
assigned partition. The dedup table's changelog is written by hand and never streamed, and
``approvals.raw`` reaches the batch loop through the intake instead of a faust stream: left to
itself, faust reported both as stalled at ERROR, ~70 lines a minute, once the timeout (5 minutes by
default) had passed. The tests make the timeout short (``DINGDEE_STALL_TIMEOUT_SECONDS``).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from dingdee_common.codec import encode_model
from dingdee_common.kafka.topics import Topics
from dingdee_common.settings import KafkaSettings
from tests.helpers import json_log_lines, poll_until
from tests.integration.test_transformer_service import produce, read_all, transformer_process
from tests.unit.transformer.samples import snapshot

pytestmark = pytest.mark.integration

STALL_TIMEOUT = 2.0
DETECTOR_INTERVAL = 2.5  # faust: 2.5 × broker_commit_interval (1 s in the transformer)


def _errors(log: Path) -> list[dict[str, Any]]:
    return [line for line in json_log_lines(log) if line.get("level") == "error"]


def _good(i: int) -> tuple[bytes, bytes]:
    pid = f"pi-stall-{i}"
    value = snapshot(business_id=f"2026120312000000{i:05d}", pid=pid, fingerprint=f"f{i}")
    return pid.encode(), encode_model(value)


async def _produce_slowly(kafka: KafkaSettings, topic: str) -> None:
    """One record at a time, so the consumer fetches them one fetch after another."""
    for i in range(10_000):
        await produce(kafka, topic, [(f"pi-late-{i}".encode(), encode_model(snapshot()))])
        await asyncio.sleep(0.2)


async def test_no_error_past_the_detectors_timeout_when_nothing_is_wrong(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    """Bills emitted (so the changelog grows unread) and the detector run several times: quiet."""
    topics = Topics(kafka.topic_prefix)
    proc = transformer_process(
        kafka,
        tmp_path,
        f"transformer-{uuid.uuid4().hex[:8]}",
        DINGDEE_STALL_TIMEOUT_SECONDS=str(STALL_TIMEOUT),
    )
    proc.start()
    try:
        await produce(kafka, topics.approvals_raw, [_good(i) for i in range(20)])
        # Their fingerprints go to the changelog: its end moves on while its position stays,
        # which faust took for a stream that never started.
        await read_all(kafka, topics.bills_ready, 20, "the 20 bills", settle=0.5)
        await asyncio.sleep(STALL_TIMEOUT + 3 * DETECTOR_INTERVAL)
        assert proc.alive
    finally:
        code = proc.stop()
    assert code == 0
    assert _errors(tmp_path / "transformer.log") == []


async def test_a_real_stall_is_still_reported(kafka: KafkaSettings, tmp_path: Path) -> None:
    """A batch loop that takes no more records while more arrive: faust's detector says so."""
    topics = Topics(kafka.topic_prefix)
    # The flood guard stops the batch loop for good (only a restart resumes): records that arrive
    # after it are fetched by the consumer but never taken.
    await produce(kafka, topics.approvals_raw, [(b"pi-bad-%d" % i, b"not json") for i in range(20)])
    proc = transformer_process(
        kafka,
        tmp_path,
        f"transformer-{uuid.uuid4().hex[:8]}",
        DINGDEE_STALL_TIMEOUT_SECONDS=str(STALL_TIMEOUT),
        DINGDEE_FLOOD_GUARD__MAX_CONSECUTIVE="5",
        DINGDEE_FLOOD_GUARD__MIN_RECORDS="1000",
    )
    proc.start()
    log = tmp_path / "transformer.log"
    producing = asyncio.create_task(_produce_slowly(kafka, topics.approvals_raw))
    try:

        def stall_reported() -> bool:
            return any(
                "Stream stopped processing" in event and topics.approvals_raw in event
                for event in (str(line["event"]) for line in _errors(log))
            )

        await poll_until(stall_reported, timeout=60, what="faust's stall ERROR on approvals.raw")
    finally:
        producing.cancel()
        await asyncio.gather(producing, return_exceptions=True)
        code = proc.stop()
    assert code == 0
    stalled = [str(line["event"]) for line in _errors(log) if "floodguard" not in line["event"]]
    assert all("seen-changelog" not in event for event in stalled), stalled
