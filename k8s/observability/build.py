"""Build ``dashboards/*.json`` and ``prometheusrule.yaml`` (run: python k8s/observability/build.py).

The outputs are committed so kustomize and Grafana's sidecar can load them; tests/unit/k8s checks
that they equal what this script builds, that the PrometheusRule carries exactly the groups of
``rules/dingdee.rules.yml``, and that every query uses a metric the services register.
Datasource UID is pinned (``dingdee-prometheus``); every dashboard has a ``flow`` variable. The
dashboards are built with Grafana's own ``grafana-foundation-sdk`` (pinned in constraints.txt)
through the building blocks of the sibling ``panels.py``; this file says what each dashboard
shows.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard
from panels import F, PanelSpec, board, p95, quantile  # the sibling panels.py

ROOT = Path(__file__).resolve().parent
HERE = ROOT / "dashboards"
RULES = ROOT / "rules" / "dingdee.rules.yml"
PROMETHEUS_RULE = ROOT / "prometheusrule.yaml"


def pipeline() -> Dashboard:
    panels: list[PanelSpec] = [
        (
            "Records in per stage (/s)",
            [(f"sum by (stage) (rate(dingdee_records_in_total{F}[5m]))", "{{stage}}")],
            "ops",
        ),
        (
            "Records out per stage and outcome (/s)",
            [
                (
                    f"sum by (stage, outcome) (rate(dingdee_records_out_total{F}[5m]))",
                    "{{stage}} {{outcome}}",
                )
            ],
            "ops",
        ),
        (
            "Processing time p95 per stage",
            [
                (
                    p95("dingdee_processing_duration_seconds"),
                    "{{stage}}",
                )
            ],
            "s",
        ),
        (
            "Dead letters per stage and error class (/s)",
            [
                (
                    f"sum by (stage, error_class) (rate(dingdee_dlq_records_total{F}[5m]))",
                    "{{stage}} {{error_class}}",
                )
            ],
            "ops",
        ),
        (
            "Consumer lag (records)",
            [("max by (stage, topic) (dingdee_consumer_lag_records)", "{{stage}} {{topic}}")],
            "short",
        ),
        (
            "Consumer lag (seconds)",
            [("max by (stage, topic) (dingdee_consumer_lag_seconds)", "{{stage}} {{topic}}")],
            "s",
        ),
        (
            "Extractor freshness per flow (now - watermark)",
            [(f"max by (flow) (dingdee_extractor_freshness_seconds{F})", "{{flow}}")],
            "s",
        ),
        (
            "Record age p95 when a stage finishes it",
            [
                (
                    p95("dingdee_record_age_seconds", selector=F),
                    "{{stage}}",
                )
            ],
            "s",
        ),
        (
            "Polled vs posted per flow (since start)",
            [
                (
                    f"sum by (flow) (dingdee_extractor_instances_emitted_total{F})",
                    "polled {{flow}}",
                ),
                (f"sum by (flow) (dingdee_loader_rows_total{F})", "posted {{flow}}"),
            ],
            "short",
        ),
        (
            "Reference data: rows per source",
            [("max by (source) (dingdee_refdata_rows)", "{{source}}")],
            "short",
        ),
        (
            "Reference data: age per source and lookup misses (/s)",
            [
                ("max by (source) (dingdee_refdata_age_seconds)", "age {{source}}"),
                ("sum by (source) (rate(dingdee_refdata_misses_total[5m]))", "misses {{source}}"),
            ],
            "s",
        ),
        (
            "Parked records per source",
            [("max by (source) (dingdee_parked_records)", "{{source}}")],
            "short",
        ),
        (
            "Oldest parked record (age)",
            [("max(dingdee_parked_oldest_age_seconds)", "oldest")],
            "s",
        ),
        (
            "Ready / flood guard per stage",
            [
                ("max by (stage) (dingdee_ready)", "ready {{stage}}"),
                ("max by (stage) (dingdee_flood_guard_tripped)", "flood guard {{stage}}"),
            ],
            "short",
        ),
    ]
    return board(
        "dingdee-pipeline", "dingdee · pipeline overview", panels, "dingdee_records_in_total"
    )


def dingtalk() -> Dashboard:
    req = "dingdee_dingtalk_requests_total"
    panels: list[PanelSpec] = [
        ("Requests per API (/s)", [(f"sum by (api) (rate({req}[5m]))", "{{api}}")], "ops"),
        (
            "Errors by API and errcode (/s)",
            [(f'sum by (api, errcode) (rate({req}{{errcode!="0"}}[5m]))', "{{api}} {{errcode}}")],
            "ops",
        ),
        (
            "Latency p95 per API",
            [(p95("dingdee_dingtalk_request_duration_seconds", by="api"), "{{api}}")],
            "s",
        ),
        (
            "Rate-limit waits (s waited per s)",
            [
                (
                    "sum by (app, api) (rate(dingdee_dingtalk_rate_limit_wait_seconds_total[5m]))",
                    "{{app}} {{api}}",
                )
            ],
            "percentunit",
        ),
        (
            "Token refreshes (per hour) by reason",
            [
                (
                    "sum by (app, reason) (increase(dingdee_dingtalk_token_refreshes_total[1h]))",
                    "{{app}} {{reason}}",
                )
            ],
            "short",
        ),
        (
            "Snapshots emitted by flow and status (/s)",
            [
                (
                    "sum by (flow, status) "
                    f"(rate(dingdee_extractor_instances_emitted_total{F}[5m]))",
                    "{{flow}} {{status}}",
                )
            ],
            "ops",
        ),
        (
            "Open instances re-checked per flow",
            [(f"sum by (flow) (dingdee_extractor_open_instances{F})", "{{flow}}")],
            "short",
        ),
        (
            "Calls per terminal approval",
            [(f"max by (flow) (dingdee_extractor_calls_per_terminal_approval{F})", "{{flow}}")],
            "short",
        ),
        (
            "Seconds since the last complete poll",
            [
                (
                    "time() - max by (flow) "
                    f"(dingdee_extractor_last_successful_poll_timestamp_seconds{F})",
                    "{{flow}}",
                )
            ],
            "s",
        ),
        (
            "Poll interval per flow (stretched by the monthly budget)",
            [(f"max by (flow) (dingdee_extractor_poll_interval_seconds{F})", "{{flow}}")],
            "s",
        ),
        (
            "Monthly DingTalk calls: used, projected, budget",
            [
                ("max by (app) (dingdee_dingtalk_quota_used_calls)", "{{app}} used"),
                ("max by (app) (dingdee_dingtalk_quota_projected_calls)", "{{app}} projected"),
                (
                    "max by (app) (dingdee_dingtalk_quota_used_calls"
                    " + dingdee_dingtalk_quota_remaining_calls)",
                    "{{app}} budget",
                ),
            ],
            "short",
        ),
        (
            "Event stream: connected, seconds since the last event",
            [
                ("max by (app) (dingdee_dingtalk_event_stream_connected)", "{{app}} connected"),
                (
                    "time() - max by (app) "
                    "(dingdee_dingtalk_event_last_received_timestamp_seconds)",
                    "{{app}} silent for (s)",
                ),
            ],
            "short",
        ),
    ]
    return board(
        "dingdee-dingtalk", "dingdee · DingTalk API", panels, "dingdee_extractor_freshness_seconds"
    )


def kingdee() -> Dashboard:
    rows = f"sum by (outcome) (rate(dingdee_loader_rows_total{F}[5m]))"
    panels: list[PanelSpec] = [
        (
            "BatchSave calls (/s)",
            [("sum(rate(dingdee_loader_batch_size_records_count[5m]))", "batches")],
            "ops",
        ),
        (
            "Packages per BatchSave (p50 / p95)",
            [
                (
                    quantile(0.5, "dingdee_loader_batch_size_records"),
                    "p50",
                ),
                (
                    quantile(0.95, "dingdee_loader_batch_size_records"),
                    "p95",
                ),
            ],
            "short",
        ),
        ("Rows by outcome (/s)", [(rows, "{{outcome}}")], "ops"),
        (
            "Kingdee latency p95 per service",
            [(p95("dingdee_loader_kingdee_request_duration_seconds", by="service"), "{{service}}")],
            "s",
        ),
        (
            "Kingdee errors by service and kind (/s)",
            [
                (
                    "sum by (service, kind) (rate(dingdee_loader_kingdee_errors_total[5m]))",
                    "{{service}} {{kind}}",
                )
            ],
            "ops",
        ),
        (
            "Re-logins (per hour)",
            [("sum(increase(dingdee_loader_relogins_total[1h]))", "re-logins")],
            "short",
        ),
        (
            "Existence checks before sending (/s)",
            [("sum by (result) (rate(dingdee_loader_prechecks_total[5m]))", "{{result}}")],
            "ops",
        ),
        ("Batches in flight", [("sum(dingdee_loader_batches_in_flight)", "in flight")], "short"),
        (
            "Kingdee up (0 = loader paused, back-pressure) and probes (/s)",
            [
                ("min(dingdee_kingdee_up)", "up"),
                ("sum by (result) (rate(dingdee_loader_kingdee_probes_total[5m]))", "{{result}}"),
            ],
            "short",
        ),
        *_attachment_panels(),
    ]
    return board("dingdee-kingdee", "dingdee · Kingdee", panels, "dingdee_loader_rows_total")


def _attachment_panels() -> list[PanelSpec]:
    """Issue #18: files and bytes moved, failures, write-back comments."""
    return [
        (
            "Attachment files by result (/s)",
            [(f"sum by (result) (rate(dingdee_attachment_files_total{F}[5m]))", "{{result}}")],
            "ops",
        ),
        (
            "Attachment bytes uploaded (/s)",
            [(f"sum(rate(dingdee_attachment_bytes_total{F}[5m]))", "bytes")],
            "Bps",
        ),
        (
            "Attachment dead letters by type (per hour)",
            [
                (
                    f"sum by (error_type) (increase(dingdee_attachment_failures_total{F}[1h]))",
                    "{{error_type}}",
                )
            ],
            "short",
        ),
        (
            "Write-backs by channel, outcome and result (per hour)",
            [
                (
                    "sum by (channel, outcome, result) "
                    f"(increase(dingdee_writebacks_total{F}[1h]))",
                    "{{channel}} {{outcome}} {{result}}",
                )
            ],
            "short",
        ),
        (
            "Oldest pending follow-up (write-back, download URL): age",
            [("max(dingdee_followups_oldest_pending_seconds)", "oldest")],
            "s",
        ),
    ]


DASHBOARDS = {"pipeline.json": pipeline, "dingtalk.json": dingtalk, "kingdee.json": kingdee}


def render() -> dict[str, str]:
    """File name → JSON text of every dashboard."""
    return {
        name: json.dumps(build(), cls=JSONEncoder, indent=2, ensure_ascii=False) + "\n"
        for name, build in DASHBOARDS.items()
    }


def prometheus_rule() -> str:
    """The PrometheusRule object (Prometheus Operator) carrying the plain rules file's groups."""
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    obj = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "dingdee", "labels": {"role": "alert-rules"}},
        "spec": {"groups": groups},
    }
    header = (
        "# Generated by k8s/observability/build.py from rules/dingdee.rules.yml - do not edit.\n"
    )
    return header + yaml.safe_dump(obj, sort_keys=False, allow_unicode=True, width=1000)


def main() -> None:
    for name, text in render().items():
        (HERE / name).write_text(text, encoding="utf-8")
    PROMETHEUS_RULE.write_text(prometheus_rule(), encoding="utf-8")


if __name__ == "__main__":
    main()
