"""Versioned message contracts of DESIGN §2 (one module per version)."""

from dingdee_common.contracts.v1 import (
    SCHEMA_VERSION,
    ApprovalSnapshot,
    BillOutcome,
    BillReady,
    BillResult,
    CallUsage,
    Checkpoint,
    EmittedInstance,
    OpenInstance,
    ReplayAudit,
    SourceRef,
)

__all__ = [
    "SCHEMA_VERSION",
    "ApprovalSnapshot",
    "BillOutcome",
    "BillReady",
    "BillResult",
    "CallUsage",
    "Checkpoint",
    "EmittedInstance",
    "OpenInstance",
    "ReplayAudit",
    "SourceRef",
]
