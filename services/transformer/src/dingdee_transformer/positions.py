"""The transformer consumer's positions: where each partition's next record must start, exact
table ends. Public faust and aiokafka API only (the private names: ``faust_adapter``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from aiokafka import TopicPartition
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from dingdee_common.kafka.clients import make_consumer
from dingdee_common.kafka.reading import exact_end_offsets
from dingdee_common.settings import KafkaSettings
from dingdee_transformer.intake import FetchIntake

__all__ = ["INTAKE_ATTR", "KAFKA_SETTINGS_ATTR", "PositionedConsumer"]

KAFKA_SETTINGS_ATTR = "dingdee_kafka_settings"  # on the faust app: what the consumer's probes use
INTAKE_ATTR = "dingdee_intake"  # on the faust app: where the consumer hands whole fetches


class PositionedConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer that knows each intake partition's next offset, with exact
    table ends; :class:`~dingdee_transformer.faust_adapter.TransformerConsumer` delivers."""

    # Per partition of the intake's topic: the offset the next delivered record must have (set by
    # every seek, advanced by every delivery); absent until the first seek or record.
    _next: dict[TP, int]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._next = {}

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """Seek every partition to its committed offset; the intake's from the start if none.

        aiokafka leaves a partition without a committed offset (or committed at 0) where its
        fetching got to. Records of it fetched before this seek and then dropped (the flow was
        stopped or the generation changed for a rebalance) would never be read again: such
        partitions of the intake's topic are sought to offset 0 (the earliest record, as
        ``auto_offset_reset=earliest`` would).
        """
        committed = await super().seek_to_committed()
        intake = cast("FetchIntake | None", getattr(self.app, INTAKE_ATTR, None))
        self._next = {}
        for partition, offset in committed.items():
            tp = TP(partition.topic, partition.partition)
            if intake is None or tp.topic != intake.topic:
                continue
            if isinstance(offset, int) and offset > 0:
                self._next[tp] = offset
                continue
            await super().seek(tp, 0)
            if offset == 0:
                self._next[tp] = 0
        return committed

    async def seek(self, partition: TP, offset: int) -> None:
        await super().seek(partition, offset)
        self._next[TP(partition.topic, partition.partition)] = offset

    async def highwaters(self, *partitions: TP) -> Mapping[TP, int]:
        """End offsets for table recovery, exact even where the broker lists them short.

        faust restores the dedup table by reading each changelog partition up to its listed end.
        Tansu lists "base offset of the last batch + 1", so a worker restored only the first
        record of the last changelog batch and re-emitted snapshots it had already emitted
        (tests/integration/test_transformer_scale.py).
        """
        kafka: KafkaSettings = getattr(self.app, KAFKA_SETTINGS_ATTR)
        probe = make_consumer(kafka, group_id=None)  # faust's own consumer is in a group
        await probe.start()
        try:
            ends = await exact_end_offsets(probe, [TopicPartition(*tp) for tp in partitions])
        finally:
            await probe.stop()
        return {tp: ends[TopicPartition(*tp)] for tp in partitions}
