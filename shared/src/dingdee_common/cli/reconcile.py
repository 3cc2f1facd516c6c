"""``dingdee reconcile``: prove per flow and period that nothing was lost (DESIGN §5).

Exit codes: 0 nothing missing; 1 at least one approved instance has no bill, no dead letter and is
not in flight; 2 bad arguments or settings.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from dingdee_common.dlq.records import parse_time
from dingdee_common.errors import FatalError
from dingdee_common.reconcile.engine import ReconcileSettings, reconcile
from dingdee_common.reconcile.model import ReconcileReport
from dingdee_common.runtime import settings_or_exit

__all__ = ["app"]

console = Console()
LABELS = {
    "instances": "期间内发起的钉钉实例",
    "not_applicable": "不生成单据（未通过/撤销等）",
    "expected": "应有单据",
    "matched": "金蝶中已有",
    "dead_lettered": "在死信队列中",
    "in_flight": "仍在处理中",
    "missing": "缺失",
    "extra": "多余",
}


def _time(value: str, option: str) -> datetime:
    try:
        return parse_time(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{option}: {exc}") from exc


def app(
    flow: Annotated[str, typer.Option("--flow", help="流程 id (flows.yaml)")],
    from_: Annotated[str, typer.Option("--from", help="期间开始 (ISO 8601, 含)，按钉钉发起时间")],
    to: Annotated[str, typer.Option("--to", help="期间结束 (ISO 8601, 不含)")],
    details: Annotated[int, typer.Option(help="每类最多列出几条明细")] = 20,
) -> None:
    """对账：钉钉已审批实例 vs 金蝶单据 vs 死信队列；有缺失时退出码为 1。"""
    start, end = _time(from_, "--from"), _time(to, "--to")
    if end <= start:
        raise typer.BadParameter("--to 必须晚于 --from")
    settings = settings_or_exit(ReconcileSettings, "dingdee reconcile")
    try:
        report = asyncio.run(reconcile(settings, flow, start, end))
    except FatalError as exc:
        console.print(f"[red]对账失败:[/red] {exc}")
        raise typer.Exit(2) from exc
    render(report, details)
    raise typer.Exit(0 if report.ok else 1)


def render(report: ReconcileReport, details: int) -> None:
    """Print the counts and the records behind every non-matched bucket."""
    console.print(
        f"[bold]对账[/bold] 流程 {report.flow}  期间 {report.period_from.isoformat()} ~ "
        f"{report.period_to.isoformat()}"
    )
    table = Table("项目", "条数")
    for key, count in report.counts().items():
        style = "red" if key == "missing" and count else ""
        table.add_row(LABELS[key], f"[{style}]{count}[/{style}]" if style else str(count))
    console.print(table)
    for item in report.missing[:details]:
        why = f"（映射失败: {item.problem}）" if item.problem else ""
        console.print(
            f"[red]缺失[/red] 实例 {item.process_instance_id} 单号 {item.bill_key or '?'}{why}"
        )
    for item, where in report.dead_lettered[:details]:
        console.print(f"死信 实例 {item.process_instance_id} 单号 {item.bill_key or '?'}: {where}")
    for item, where in report.in_flight[:details]:
        console.print(
            f"处理中 实例 {item.process_instance_id} 单号 {item.bill_key or '?'}: {where}"
        )
    for extra in report.extra[:details]:
        console.print(f"[yellow]多余[/yellow] 单号 {extra.bill_key} ×{extra.count}: {extra.why}")
    console.print("[green]无缺失。[/green]" if report.ok else "[red]存在缺失的单据。[/red]")
