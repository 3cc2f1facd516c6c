"""Every metric the extractor exposes, registered on a passed registry (STYLE §6)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from dingdee_common.observability.followups import FollowupMetrics
from dingdee_common.observability.metrics import LATENCY_BUCKETS, StageMetrics

__all__ = ["STAGE", "ExtractorMetrics"]

STAGE = "extractor"


@dataclass
class ExtractorMetrics:
    stage: StageMetrics
    followups: FollowupMetrics  # issue #18: attachments and write-back
    requests: Counter
    request_duration: Histogram
    rate_limit_wait: Counter
    token_refreshes: Counter
    emitted: Counter
    open_instances: Gauge
    freshness: Gauge
    last_poll: Gauge
    calls_per_terminal: Gauge
    quota_used: Gauge
    quota_remaining: Gauge
    quota_projected: Gauge
    poll_interval: Gauge
    swept: Counter
    events: Counter
    events_connected: Gauge
    events_last_received: Gauge
    dingtalk_up: Gauge
    punished: Counter
    followups_oldest: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ExtractorMetrics:
        return cls(
            stage=StageMetrics.create(registry, STAGE),
            followups=FollowupMetrics.create(registry),
            requests=Counter(
                "dingdee_dingtalk_requests_total",
                "DingTalk API calls by app, API and errcode/sub_code (0 = success)",
                ["app", "api", "errcode"],
                registry=registry,
            ),
            request_duration=Histogram(
                "dingdee_dingtalk_request_duration_seconds",
                "DingTalk API call latency",
                ["api"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            rate_limit_wait=Counter(
                "dingdee_dingtalk_rate_limit_wait_seconds_total",
                "Seconds spent waiting for the per-(app, API) token bucket",
                ["app", "api"],
                registry=registry,
            ),
            token_refreshes=Counter(
                "dingdee_dingtalk_token_refreshes_total",
                "Access-token fetches by reason (startup, expiry, rejected)",
                ["app", "reason"],
                registry=registry,
            ),
            emitted=Counter(
                "dingdee_extractor_instances_emitted_total",
                "Approval snapshots produced to approvals.raw by flow and instance status",
                ["flow", "status"],
                registry=registry,
            ),
            open_instances=Gauge(
                "dingdee_extractor_open_instances",
                "Unfinished (NEW/RUNNING) instances tracked for re-fetching",
                ["flow"],
                registry=registry,
            ),
            freshness=Gauge(
                "dingdee_extractor_freshness_seconds",
                "now - watermark: how far behind DingTalk the flow's polling is",
                ["flow"],
                registry=registry,
            ),
            last_poll=Gauge(
                "dingdee_extractor_last_successful_poll_timestamp_seconds",
                "Unix time of the flow's last complete poll cycle",
                ["flow"],
                registry=registry,
            ),
            calls_per_terminal=Gauge(
                "dingdee_extractor_calls_per_terminal_approval",
                "DingTalk listids+get calls spent per terminal approval emitted (since start)",
                ["flow"],
                registry=registry,
            ),
            quota_used=Gauge(
                "dingdee_dingtalk_quota_used_calls",
                "Metered DingTalk calls (listids + get attempts) this month, from the checkpoints",
                ["app"],
                registry=registry,
            ),
            quota_remaining=Gauge(
                "dingdee_dingtalk_quota_remaining_calls",
                "Monthly call budget left (only for apps with a configured budget)",
                ["app"],
                registry=registry,
            ),
            quota_projected=Gauge(
                "dingdee_dingtalk_quota_projected_calls",
                "Metered calls the app will have made by the end of this month at the current pace",
                ["app"],
                registry=registry,
            ),
            poll_interval=Gauge(
                "dingdee_extractor_poll_interval_seconds",
                "The flow's current poll interval (stretched when a monthly call budget needs it)",
                ["flow"],
                registry=registry,
            ),
            swept=Counter(
                "dingdee_extractor_sweep_found_total",
                "Instances the compensation sweep found that the polling windows had not listed",
                ["flow"],
                registry=registry,
            ),
            events=Counter(
                "dingdee_dingtalk_events_total",
                "Stream-mode approval events by type (start/finish/terminate) and outcome",
                ["app", "type", "outcome"],
                registry=registry,
            ),
            events_connected=Gauge(
                "dingdee_dingtalk_event_stream_connected",
                "1 while the app's Stream-mode connection is open",
                ["app"],
                registry=registry,
            ),
            events_last_received=Gauge(
                "dingdee_dingtalk_event_last_received_timestamp_seconds",
                "Unix time of the last event on the app's stream (or of the listener's start)",
                ["app"],
                registry=registry,
            ),
            dingtalk_up=Gauge(
                "dingdee_dingtalk_up",
                "0 while the extractor waits out DingTalk being unavailable for the app "
                "(calls unanswered, errcode -1, HTTP 5xx or throttling past the retry budget)",
                ["app"],
                registry=registry,
            ),
            punished=Counter(
                "dingdee_dingtalk_punished_total",
                "DingTalk anti-abuse ban answers ({status:1111, punish:deny}): the egress IP "
                "made too many calls; every call waits the ban out",
                ["app"],
                registry=registry,
            ),
            followups_oldest=Gauge(
                "dingdee_followups_oldest_pending_seconds",
                "Age of the oldest follow-up (write-back comment, attachment download URL) the "
                "extractor has taken up and not finished, from its record's time; 0 when none",
                registry=registry,
            ),
        )
