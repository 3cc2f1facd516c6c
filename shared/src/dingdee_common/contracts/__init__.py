"""Versioned message contracts of DESIGN §2 (one module per version)."""

from dingdee_common.contracts.v1 import (
    SCHEMA_VERSION,
    ApprovalSnapshot,
    AttachmentRefresh,
    AttachmentResult,
    AttachmentWork,
    BillOutcome,
    BillReady,
    BillResult,
    CallUsage,
    Checkpoint,
    EmittedInstance,
    FileRef,
    OpenInstance,
    ReplayAudit,
    SourceRef,
    WritebackMark,
)

__all__ = [
    "SCHEMA_VERSION",
    "ApprovalSnapshot",
    "AttachmentRefresh",
    "AttachmentResult",
    "AttachmentWork",
    "BillOutcome",
    "BillReady",
    "BillResult",
    "CallUsage",
    "Checkpoint",
    "EmittedInstance",
    "FileRef",
    "OpenInstance",
    "ReplayAudit",
    "SourceRef",
    "WritebackMark",
]
