"""Metrics of the follow-ups (issue #18): attachment files and bytes moved, write-backs.

Registered by the extractor (URLs, write-backs) and the loader (files, bytes, failures) on their
own registries; ``docs/metrics.md`` lists them.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

__all__ = ["FollowupMetrics"]


@dataclass
class FollowupMetrics:
    files: Counter
    bytes: Counter
    failures: Counter
    urls: Counter
    writebacks: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> FollowupMetrics:
        return cls(
            files=Counter(
                "dingdee_attachment_files_total",
                "Attachment files by what became of them (attached, already_attached, "
                "dead_lettered, refresh_requested)",
                ["flow", "result"],
                registry=registry,
            ),
            bytes=Counter(
                "dingdee_attachment_bytes_total",
                "Bytes of attachment files uploaded to Kingdee",
                ["flow"],
                registry=registry,
            ),
            failures=Counter(
                "dingdee_attachment_failures_total",
                "Attachment files dead-lettered, by error type",
                ["flow", "error_type"],
                registry=registry,
            ),
            urls=Counter(
                "dingdee_attachment_urls_total",
                "Attachment work items the extractor published (issued: with a fresh download "
                "URL; refused: with a reason instead)",
                ["flow", "result"],
                registry=registry,
            ),
            writebacks=Counter(
                "dingdee_writebacks_total",
                "Write-backs by bill outcome, result (posted, duplicate, failed) and channel "
                "(comment, notification)",
                ["flow", "outcome", "result", "channel"],
                registry=registry,
            ),
        )
