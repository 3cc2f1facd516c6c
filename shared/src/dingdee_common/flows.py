"""``flows.yaml``: the declared flows (DESIGN §1, §7).

A flow is one DingTalk approval template (``process_code``) mapped to one Kingdee form with one
mapping. This module validates the file's outline and each flow's identity; each service validates
the section it reads (``dingtalk`` for the extractor, ``mapping`` for the transformer) with its own
model, and every error names the flow and the key path.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dingdee_common.errors import FatalError
from dingdee_common.refdata import ReferenceConfig

__all__ = ["FlowEntry", "FlowsFile", "flow_error", "load_flows"]

_FLOW_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class FlowEntry(BaseModel):
    """One flow; sections are validated by the service that owns them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    description: str = ""
    enabled: bool = True
    dingtalk: dict[str, Any]
    target: dict[str, Any] = Field(default_factory=dict)
    mapping: dict[str, Any] = Field(default_factory=dict)
    # issue #18, validated by dingdee_common.followups (extractor) and the transformer
    attachments: dict[str, Any] = Field(default_factory=dict)
    writeback: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        if not _FLOW_ID.match(value):
            raise ValueError("flow id must be lower-case letters, digits, '-' or '_' (max 63)")
        return value


class FlowsFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = 1
    timezone: str = "Asia/Shanghai"
    reference_tables: dict[str, dict[str, str]] = Field(default_factory=dict)
    # live reference data (issue #14): validated by ``references()`` (dingdee_common.refdata)
    reference_sources: dict[str, Any] = Field(default_factory=dict)
    reference_lookups: dict[str, Any] = Field(default_factory=dict)
    flows: list[FlowEntry]

    @field_validator("flows")
    @classmethod
    def _unique(cls, flows: list[FlowEntry]) -> list[FlowEntry]:
        seen: set[str] = set()
        for flow in flows:
            if flow.id in seen:
                raise ValueError(f"flow id {flow.id!r} is declared twice")
            seen.add(flow.id)
        return flows

    def enabled(self) -> list[FlowEntry]:
        return [f for f in self.flows if f.enabled]

    def references(self) -> ReferenceConfig:
        """The live reference sources and lookups (validated when the file is loaded)."""
        return ReferenceConfig.model_validate(
            {"sources": self.reference_sources, "lookups": self.reference_lookups}
        )


def flow_error(path: Path | str, exc: ValidationError, flows: list[Any] | None = None) -> str:
    """One line per problem: ``flows.yaml: flow 'petty-cash' mapping.fields.FDate: <what>``."""
    lines = []
    for err in exc.errors():
        loc = list(err["loc"])
        prefix = ""
        if len(loc) >= 2 and loc[0] == "flows" and isinstance(loc[1], int):
            idx = loc[1]
            flow_id = None
            if flows and idx < len(flows) and isinstance(flows[idx], dict):
                flow_id = flows[idx].get("id")
            prefix = f"flow {flow_id!r} " if flow_id else f"flows[{idx}] "
            loc = loc[2:]
        where = ".".join(str(p) for p in loc) or "(top)"
        lines.append(f"{path}: {prefix}{where}: {err['msg']}")
    return "\n".join(lines)


def load_flows(path: Path | str) -> FlowsFile:
    """Read and validate ``flows.yaml``.

    Raises:
        FatalError: the file is missing, is not YAML, or breaks the outline; the message names the
            flow and the key path.
    """
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise FatalError(f"{p}: no such file; set DINGDEE_FLOWS_FILE", code="config") from exc
    except yaml.YAMLError as exc:
        raise FatalError(f"{p}: not valid YAML: {exc}", code="config") from exc
    if not isinstance(raw, dict):
        raise FatalError(f"{p}: expected a mapping with a 'flows' list", code="config")
    try:
        flows = FlowsFile.model_validate(raw)
    except ValidationError as exc:
        raise FatalError(flow_error(p, exc, raw.get("flows")), code="config") from exc
    try:
        flows.references()
    except ValidationError as exc:
        lines = [
            f"{p}: reference_{'.'.join(str(x) for x in e['loc']) or 'sources'}: {e['msg']}"
            for e in exc.errors()
        ]
        raise FatalError("\n".join(lines), code="config") from exc
    return flows
