"""The extractor's view of ``flows.yaml``: each enabled flow's ``dingtalk`` section."""

from __future__ import annotations

from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dingdee_common.errors import FatalError
from dingdee_common.flows import load_flows

__all__ = ["FlowSource", "load_sources"]


class FlowSource(BaseModel):
    """Where one flow's approvals come from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    flow: str = ""
    app: str = Field(min_length=1, description="key of DINGDEE_DINGTALK__APPS")
    process_code: str = Field(min_length=1)
    start_date: date = Field(description="approvals created before this day are not read")
    poll_interval_seconds: float | None = Field(default=None, gt=0)
    timezone: str = "Asia/Shanghai"

    def start_ms(self) -> int:
        start = datetime.combine(self.start_date, time(), tzinfo=ZoneInfo(self.timezone))
        return int(start.timestamp() * 1000)


def load_sources(path: Path, apps: frozenset[str]) -> list[FlowSource]:
    """Validate every enabled flow's ``dingtalk`` section.

    Raises:
        FatalError: naming the flow and the key path, or an app missing from the settings.
    """
    flows = load_flows(path)
    sources: list[FlowSource] = []
    problems: list[str] = []
    for flow in flows.enabled():
        try:
            source = FlowSource.model_validate(
                {**flow.dingtalk, "flow": flow.id, "timezone": flows.timezone}
            )
        except ValidationError as exc:
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"])
                problems.append(f"{path}: flow {flow.id!r} dingtalk.{where}: {err['msg']}")
            continue
        if source.app not in apps:
            problems.append(
                f"{path}: flow {flow.id!r} dingtalk.app: {source.app!r} is not in "
                f"DINGDEE_DINGTALK__APPS ({sorted(apps)})"
            )
        sources.append(source)
    if problems:
        raise FatalError("\n".join(problems), code="config")
    return sources
