"""The topic registry of DESIGN §2 and idempotent provisioning.

No service relies on broker auto-creation: ``provision`` creates every topic with its partition
count and configs, and is shared by ``make run``, the tests and ``dingdee topics create``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from dingdee_common.errors import FatalError
from dingdee_common.settings import KafkaSettings

__all__ = ["STAGES", "TopicSpec", "Topics", "provision"]

STAGES = ("extractor", "transformer", "loader")
_TOPIC_EXISTS = 36
_WEEK_MS = str(7 * 24 * 3600 * 1000)
_DLQ_RETENTION_MS = str(30 * 24 * 3600 * 1000)


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Topics:
    """Full topic names for one prefix."""

    prefix: str = "dingdee."

    def _n(self, suffix: str) -> str:
        return f"{self.prefix}{suffix}"

    @property
    def approvals_raw(self) -> str:
        return self._n("approvals.raw")

    @property
    def bills_ready(self) -> str:
        return self._n("bills.ready")

    @property
    def bills_result(self) -> str:
        return self._n("bills.result")

    @property
    def attachments_work(self) -> str:
        """One file to attach to a saved bill (extractor → loader, issue #18)."""
        return self._n("attachments.work")

    @property
    def attachments_refresh(self) -> str:
        """The loader asks for a fresh download URL (loader → extractor)."""
        return self._n("attachments.refresh")

    @property
    def attachments_result(self) -> str:
        """What became of each file (loader → audit, dashboards)."""
        return self._n("attachments.result")

    @property
    def writeback_log(self) -> str:
        """Write-back comments pending and done, keyed approval:outcome (compacted)."""
        return self._n("writeback.log")

    @property
    def writeback_requests(self) -> str:
        """A write-back to run again: where a replayed write-back dead letter goes (the
        extractor's follow-up consumer reads it; issue #18)."""
        return self._n("writeback.requests")

    @property
    def checkpoints(self) -> str:
        return self._n("extractor.checkpoints")

    def dlq(self, stage: str) -> str:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
        return self._n(f"dlq.{stage}")

    @property
    def replay_audit(self) -> str:
        return self._n("dlq.replay.audit")

    @property
    def parking(self) -> str:
        return self._n("dlq.parking")

    def refdata(self, source: str) -> str:
        """The compacted topic of one reference source, keyed by its source key (issue #14)."""
        return self._n(f"refdata.{source}")

    @property
    def refdata_requests(self) -> str:
        return self._n("refdata.requests")

    @property
    def parked(self) -> str:
        """Records waiting for a reference (compacted, keyed by process instance id)."""
        return self._n("transformer.parked")

    def refdata_specs(self, sources: Iterable[str]) -> list[TopicSpec]:
        """One compacted single-partition topic per reference source."""
        return [TopicSpec(self.refdata(s), 1, {"cleanup.policy": "compact"}) for s in sources]

    def replay_targets(self) -> frozenset[str]:
        """The allow-list of topics a dead letter may be replayed onto."""
        return frozenset(
            {self.approvals_raw, self.bills_ready, self.attachments_work, self.writeback_requests}
        )

    def specs(self, partitions: int) -> list[TopicSpec]:
        data = {"retention.ms": _WEEK_MS}
        dlq = {"retention.ms": _DLQ_RETENTION_MS}
        return [
            TopicSpec(self.approvals_raw, partitions, data),
            TopicSpec(self.bills_ready, partitions, data),
            TopicSpec(self.bills_result, partitions, data),
            TopicSpec(self.attachments_work, partitions, data),
            TopicSpec(self.attachments_refresh, partitions, data),
            TopicSpec(self.attachments_result, partitions, data),
            TopicSpec(self.writeback_log, 1, {"cleanup.policy": "compact"}),
            TopicSpec(self.writeback_requests, 1, data),
            TopicSpec(self.checkpoints, 1, {"cleanup.policy": "compact"}),
            *(TopicSpec(self.dlq(stage), 1, dlq) for stage in STAGES),
            TopicSpec(self.replay_audit, 1, {"retention.ms": "-1"}),
            TopicSpec(self.parking, 1, {"retention.ms": "-1"}),
            TopicSpec(self.refdata_requests, 1, {"retention.ms": str(24 * 3600 * 1000)}),
            TopicSpec(self.parked, 1, {"cleanup.policy": "compact"}),
        ]


async def provision(
    settings: KafkaSettings, topics: Topics | None = None, *, extra: Iterable[TopicSpec] = ()
) -> list[str]:
    """Create every dingdee topic that does not exist yet; return the names created.

    ``extra``: topics that depend on ``flows.yaml`` (``Topics.refdata_specs``).

    Raises:
        FatalError: the broker refused a topic for a reason other than "already exists".
    """
    topics = topics or Topics(settings.topic_prefix)
    admin = AIOKafkaAdminClient(**settings.client_kwargs())
    await admin.start()
    try:
        specs = [*topics.specs(settings.partitions), *extra]
        new = [
            NewTopic(s.name, s.partitions, settings.replication_factor, topic_configs=s.config)
            for s in specs
        ]
        response = await admin.create_topics(new)
        created: list[str] = []
        for topic, code, message in response.topic_errors:
            if code == 0:
                created.append(topic)
            elif code != _TOPIC_EXISTS:
                raise FatalError(
                    f"could not create topic {topic}: error {code} {message}; check "
                    "DINGDEE_KAFKA__REPLICATION_FACTOR and the broker's ACLs",
                    code="topic_provisioning",
                )
        return created
    finally:
        await admin.close()
