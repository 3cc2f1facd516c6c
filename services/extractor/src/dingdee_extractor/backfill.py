"""Backfill: read a flow's history from a start date, chunked, resumable, beside live polling.

``dingdee backfill --flow F --from 2025-12-01 [--to 2026-03-01]`` (the operator CLI, which shows
the progress; it runs :func:`dingdee_extractor.runner.run`). Progress is
checkpointed under the key ``backfill:<flow>`` after every chunk whose snapshots were acked, so a
killed backfill resumes where it stopped (re-reading at most one chunk). Instances that are still
open when the history is read are re-fetched on the usual schedule until they finish.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaProducer

from dingdee_common.contracts import Checkpoint
from dingdee_common.kafka.dlq import DeadLetterPublisher
from dingdee_common.kafka.topics import Topics
from dingdee_common.observability.logging import get_logger
from dingdee_common.observability.server import Health
from dingdee_extractor.checkpoints import CheckpointStore
from dingdee_extractor.dingtalk.client import DingTalkClient
from dingdee_extractor.emitter import Emitter
from dingdee_extractor.flows import FlowSource
from dingdee_extractor.metrics import ExtractorMetrics
from dingdee_extractor.outage import OutageWatch
from dingdee_extractor.poller import FlowPoller
from dingdee_extractor.settings import ExtractorSettings

__all__ = ["BackfillArgs", "Progress", "backfill_poller", "read_history"]

log = get_logger(__name__)

Progress = Callable[[int, int], None]  # (ms of history read, ms to read): after every window


@dataclass(frozen=True)
class BackfillArgs:
    """What to read: ``[start, end)`` of one flow, in windows of ``chunk_days``."""

    flow: str
    start: date
    end: date | None = None
    chunk_days: float = 1.0
    no_follow: bool = False  # exit once the history is read, leaving open instances to polling


def _ms(day: date, tz: str) -> int:
    return int(datetime.combine(day, time(), tzinfo=ZoneInfo(tz)).timestamp() * 1000)


async def read_history(
    poller: FlowPoller,
    args: BackfillArgs,
    settings: ExtractorSettings,
    metrics: ExtractorMetrics,
    health: Health,
    stop: asyncio.Event,
) -> int:
    """Read ``[start, end)`` of one flow with :func:`backfill_poller`'s poller; return 0 when
    done, 130 when stopped early.

    A DingTalk outage is waited out (``OutageWatch``), resuming from the last chunk.
    """
    watch = OutageWatch(settings.outage, metrics, health, [poller.source.app])
    await watch.cycle(poller, stop)
    while poller.cp.open_instances and not args.no_follow and not stop.is_set():
        await asyncio.sleep(min(60.0, settings.poll.open_recheck_initial_seconds))
        await watch.cycle(poller, stop)
    log.info(
        "extractor.backfill.finished",
        flow=poller.source.flow,
        calls=poller.calls,
        open_instances=len(poller.cp.open_instances),
    )
    return 130 if stop.is_set() else 0


async def backfill_poller(
    args: BackfillArgs,
    settings: ExtractorSettings,
    source: FlowSource,
    producer: AIOKafkaProducer,
    client: DingTalkClient,
    metrics: ExtractorMetrics,
    progress: Progress | None,
) -> FlowPoller:
    """The backfill's poller: from its own checkpoint (``backfill:<flow>``), windows of
    ``chunk_days`` with no overlap, up to ``end``; ``progress`` hears the start and every window."""
    topics = Topics(settings.kafka.topic_prefix)
    store = CheckpointStore(settings.kafka, topics.checkpoints, producer)
    key = f"backfill:{source.flow}"
    start = _ms(args.start, source.timezone)
    until = _ms(args.end, source.timezone) - 1 if args.end else None
    checkpoint = (await store.load()).get(key) or Checkpoint(flow=source.flow, watermark_ms=start)
    chunk = settings.poll.model_copy(
        update={"window_max_days": args.chunk_days, "overlap_seconds": 0.0}
    )
    total_ms = max((until or int(datetime.now().timestamp() * 1000)) - start, 1)
    shown = progress or (lambda done, total: None)
    shown(checkpoint.watermark_ms - start, total_ms)

    async def save(cp: Checkpoint) -> None:
        await store.save(cp, key=key)

    return FlowPoller(
        source.model_copy(update={"start_date": args.start}),
        checkpoint,
        client=client,
        emitter=Emitter(producer, topics.approvals_raw),
        save=save,
        dlq=DeadLetterPublisher(producer, topics, "extractor"),
        metrics=metrics,
        poll=chunk,
        retry=settings.retry,
        concurrency=settings.dingtalk.get_concurrency,
        until_ms=until,
        on_window=lambda lo, hi, n: shown(hi - start, total_ms),
    )
