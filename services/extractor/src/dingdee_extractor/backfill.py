"""Backfill: read a flow's history from a start date, chunked, resumable, beside live polling.

``python -m dingdee_extractor backfill --flow F --from 2025-12-01 [--to 2026-03-01]``. Progress is
checkpointed under the key ``backfill:<flow>`` after every chunk whose snapshots were acked, so a
killed backfill resumes where it stopped (re-reading at most one chunk). Instances that are still
open when the history is read are re-fetched on the usual schedule until they finish.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaProducer
from rich.progress import Progress

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

__all__ = ["parse_args", "run_backfill"]

log = get_logger(__name__)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dingdee-extractor backfill", description=__doc__)
    parser.add_argument("--flow", required=True, help="flow id from flows.yaml")
    parser.add_argument("--from", dest="start", type=date.fromisoformat, required=True)
    parser.add_argument("--to", dest="end", type=date.fromisoformat, default=None)
    parser.add_argument("--chunk-days", type=float, default=1.0, help="days per listids window")
    parser.add_argument("--no-follow", action="store_true", help="exit once history is read")
    return parser.parse_args(argv)


def _ms(day: date, tz: str) -> int:
    return int(datetime.combine(day, time(), tzinfo=ZoneInfo(tz)).timestamp() * 1000)


async def run_backfill(
    args: argparse.Namespace,
    settings: ExtractorSettings,
    source: FlowSource,
    producer: AIOKafkaProducer,
    client: DingTalkClient,
    metrics: ExtractorMetrics,
    health: Health,
    stop: asyncio.Event,
) -> int:
    """Read ``[--from, --to)`` of one flow; return 0 when done, 130 when stopped early.

    A DingTalk outage is waited out (``OutageWatch``), resuming from the last chunk.
    """
    topics = Topics(settings.kafka.topic_prefix)
    store = CheckpointStore(settings.kafka, topics.checkpoints, producer)
    key = f"backfill:{source.flow}"
    start = _ms(args.start, source.timezone)
    until = _ms(args.end, source.timezone) - 1 if args.end else None
    checkpoint = (await store.load()).get(key) or Checkpoint(flow=source.flow, watermark_ms=start)
    chunk = settings.poll.model_copy(
        update={"window_max_days": args.chunk_days, "overlap_seconds": 0.0}
    )
    progress = Progress()
    total_ms = (until or int(datetime.now().timestamp() * 1000)) - start
    task = progress.add_task(f"backfill {source.flow}", total=max(total_ms, 1))
    progress.update(task, completed=checkpoint.watermark_ms - start)

    async def save(cp: Checkpoint) -> None:
        await store.save(cp, key=key)

    poller = FlowPoller(
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
        on_window=lambda lo, hi, n: progress.update(task, completed=hi - start),
    )
    watch = OutageWatch(settings.outage, metrics, health, [source.app])
    with progress:
        await watch.cycle(poller, stop)
        while poller.cp.open_instances and not args.no_follow and not stop.is_set():
            await asyncio.sleep(min(60.0, settings.poll.open_recheck_initial_seconds))
            await watch.cycle(poller, stop)
    log.info(
        "extractor.backfill.finished",
        flow=source.flow,
        calls=poller.calls,
        open_instances=len(poller.cp.open_instances),
    )
    return 130 if stop.is_set() else 0
