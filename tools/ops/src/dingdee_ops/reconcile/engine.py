"""``dingdee reconcile``: DingTalk approvals vs Kingdee bills vs the DLQs, per flow and period.

The bill key of each instance is computed with the transformer's own mapping (the same pure
function the pipeline runs), so reconciliation agrees with the pipeline by construction.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dingdee_common.contracts.v1 import ApprovalSnapshot
from dingdee_common.errors import FatalError, PermanentError
from dingdee_common.flows import load_flows
from dingdee_common.kafka.topics import Topics
from dingdee_common.settings import ServiceSettings
from dingdee_extractor.settings import DingTalkSettings
from dingdee_loader.settings import KingdeeSettings
from dingdee_ops.reconcile.kafka_facts import Groups, gather_kafka_facts
from dingdee_ops.reconcile.model import Expected, KeyPattern, ReconcileReport, classify
from dingdee_ops.reconcile.readers import DingTalkReader, KingdeeReader
from dingdee_transformer.flowspec import CompiledFlow, load_compiled
from dingdee_transformer.mapping import Skip, map_snapshot
from dingdee_transformer.schema import PLACEHOLDER

__all__ = ["ReconcileSettings", "reconcile"]


class ReconcileSettings(ServiceSettings):
    """The same ``DINGDEE_*`` variables the extractor and loader read, read-only use."""

    flows_file: Path = Path("config/flows.yaml")
    dingtalk: DingTalkSettings  # DINGDEE_DINGTALK__*, as the extractor reads them
    kingdee: KingdeeSettings  # DINGDEE_KINGDEE__*, as the loader reads them
    transformer_group: str = "transformer"
    loader_group: str = "loader"


def _snapshot(
    flow: str, process_code: str, instance_id: str, raw: dict[str, Any]
) -> ApprovalSnapshot:
    return ApprovalSnapshot(
        flow=flow,
        process_code=process_code,
        process_instance_id=instance_id,
        business_id=raw.get("business_id"),
        status=str(raw.get("status", "")),
        result=raw.get("result"),
        biz_action=str(raw.get("biz_action") or "NONE"),
        fetched_at=datetime.now(UTC),
        fingerprint="reconcile",
        trigger="sweep",
        instance=raw,
    )


def _target(settings: ReconcileSettings, flow_id: str) -> CompiledFlow:
    compiled = load_compiled(settings.flows_file)
    if flow_id not in compiled:
        raise FatalError(f"flow {flow_id!r} is not an enabled flow of {settings.flows_file}")
    return compiled[flow_id]


def _key_pattern(flow: CompiledFlow) -> KeyPattern:
    return KeyPattern(tuple(PLACEHOLDER.split(flow.target.bill_key)[0::2]))


async def _expected(
    settings: ReconcileSettings, flow: CompiledFlow, start: datetime, end: datetime
) -> tuple[list[Expected], list[str], dict[tuple[str, str], list[str]], int]:
    flow_id = flow.id
    entry = next(f for f in load_flows(settings.flows_file).flows if f.id == flow_id)
    reader = DingTalkReader(settings.dingtalk, str(entry.dingtalk.get("app", "main")))
    expected: list[Expected] = []
    skipped: list[str] = []
    forms: dict[tuple[str, str], list[str]] = {}
    total = 0
    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    try:
        async for instance_id, raw in reader.instances(flow.process_code, start_ms, end_ms):
            total += 1
            snapshot = _snapshot(flow_id, flow.process_code, instance_id, raw)
            try:
                result = map_snapshot(flow, snapshot)
            except PermanentError as exc:
                expected.append(Expected(instance_id, snapshot.business_id, None, str(exc)))
                continue
            if isinstance(result, Skip):
                skipped.append(instance_id)
                continue
            expected.append(Expected(instance_id, snapshot.business_id, result.bill_key))
            forms.setdefault((result.form_id, result.number_field), []).append(result.bill_key)
    finally:
        await reader.aclose()
    return expected, skipped, forms, total


async def _in_kingdee(
    settings: ReconcileSettings,
    forms: dict[tuple[str, str], list[str]],
    flow: CompiledFlow,
    pattern: KeyPattern,
) -> tuple[Counter[str], Counter[str]]:
    """(bills found per expected key, bills per number of the flow's bill-key pattern)."""
    reader = KingdeeReader(settings.kingdee)
    found: Counter[str] = Counter()
    by_pattern: Counter[str] = Counter()
    try:
        for (form_id, number_field), keys in forms.items():
            found.update(await reader.count_numbers(form_id, number_field, keys))
        if pattern.fixed:
            target = flow.target
            like = await reader.numbers_like(target.form_id, target.number_field, pattern.like())
            by_pattern.update({n: c for n, c in like.items() if pattern.matches(n)})
    finally:
        await reader.aclose()
    return found, by_pattern


async def reconcile(
    settings: ReconcileSettings, flow_id: str, start: datetime, end: datetime
) -> ReconcileReport:
    """Compare one flow's period across DingTalk, Kingdee and Kafka.

    Raises:
        FatalError: unknown flow, missing credentials, an API refusing the call, or a topic missing.
    """
    report = ReconcileReport(flow=flow_id, period_from=start, period_to=end)
    flow = _target(settings, flow_id)
    pattern = _key_pattern(flow)
    if not pattern.fixed:
        report.unchecked_extras = (
            f"单号模板 {flow.target.bill_key} 没有固定文字，无法按单号格式查找多余的单据"
        )
    expected, skipped, forms, total = await _expected(settings, flow, start, end)
    report.instances = total
    report.not_applicable = len(skipped)
    facts = await gather_kafka_facts(
        settings.kafka,
        Topics(settings.kafka.topic_prefix),
        flow_id,
        Groups(settings.transformer_group, settings.loader_group),
    )
    for instance_id in skipped:
        key = facts.bill_keys.get(instance_id)
        if key:
            forms.setdefault((flow.target.form_id, flow.target.number_field), []).append(key)
    in_kingdee, by_pattern = await _in_kingdee(settings, forms, flow, pattern)
    return classify(report, expected, skipped, in_kingdee, facts, by_pattern)
