"""``dingdee reconcile``: prove per flow and period that nothing was lost (DESIGN §5).

Exit codes: 0 nothing missing and nothing extra; 1 at least one approved instance has no bill, no
dead letter and is not in flight, or Kingdee holds an extra bill (DESIGN §5); 2 bad arguments or
settings. Ids, bill numbers and mapping problems are printed through
:func:`dingdee_ops.terminal.safe`.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dingdee_common.errors import FatalError
from dingdee_common.runtime import settings_or_exit
from dingdee_ops.dlq.records import parse_time
from dingdee_ops.reconcile.engine import ReconcileSettings, reconcile
from dingdee_ops.reconcile.model import ReconcileReport
from dingdee_ops.terminal import safe

__all__ = ["app", "as_json_report"]

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
    as_json: Annotated[
        bool, typer.Option("--json", help="只输出计数 (JSON)，供 CI 与控制台 (console) 读取")
    ] = False,
) -> None:
    """对账：钉钉已审批实例 vs 金蝶单据 vs 死信队列；有缺失或多余的单据时退出码为 1。"""
    start, end = _time(from_, "--from"), _time(to, "--to")
    if end <= start:
        raise typer.BadParameter("--to 必须晚于 --from")
    settings = settings_or_exit(ReconcileSettings, "dingdee reconcile")
    try:
        report = asyncio.run(reconcile(settings, flow, start, end))
    except FatalError as exc:
        console.print(Text("对账失败: ", style="red") + safe(str(exc), limit=None))
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(orjson.dumps(as_json_report(report), option=orjson.OPT_INDENT_2).decode())
    else:
        render(report, details)
    raise typer.Exit(0 if report.ok else 1)


def as_json_report(report: ReconcileReport) -> dict[str, Any]:
    """The counts of ``report`` (no record content): what ``--json`` prints."""
    return {
        "ok": report.ok,
        "flow": report.flow,
        "period_from": report.period_from.isoformat(),
        "period_to": report.period_to.isoformat(),
        "counts": report.counts(),
    }


def _line(label: str, style: str, item_id: str | None, bill_key: str | None, why: str) -> Text:
    """One detail line; every value from DingTalk, Kingdee or Kafka goes through ``safe``."""
    return Text.assemble(
        (label, style),
        " 实例 ",
        safe(item_id or "?"),
        " 单号 ",
        safe(bill_key or "?"),
        safe(why, limit=None) if why else "",
    )


def render(report: ReconcileReport, details: int) -> None:
    """Print the counts and the records behind every non-matched bucket."""
    console.print(
        Text.assemble(
            ("对账", "bold"),
            " 流程 ",
            safe(report.flow),
            f"  期间 {report.period_from.isoformat()} ~ {report.period_to.isoformat()}",
        )
    )
    table = Table("项目", "条数")
    for key, count in report.counts().items():
        style = "red" if key in ("missing", "extra") and count else ""
        table.add_row(LABELS[key], Text(str(count), style=style))
    console.print(table)
    for item in report.missing[:details]:
        why = f"（映射失败: {item.problem}）" if item.problem else ""
        console.print(_line("缺失", "red", item.process_instance_id, item.bill_key, why))
    for item, where in report.dead_lettered[:details]:
        console.print(_line("死信", "", item.process_instance_id, item.bill_key, f": {where}"))
    for item, where in report.in_flight[:details]:
        console.print(_line("处理中", "", item.process_instance_id, item.bill_key, f": {where}"))
    for extra in report.extra[:details]:
        console.print(
            Text.assemble(
                ("多余", "red"),
                " 单号 ",
                safe(extra.bill_key),
                f" ×{extra.count}: ",
                safe(extra.why, limit=None),
            )
        )
    if report.unchecked_extras:
        console.print(Text(f"注意: {report.unchecked_extras}", style="yellow"))
    if report.ok:
        console.print(Text("无缺失，无多余。", style="green"))
    else:
        problems = [n for n, items in (("缺失", report.missing), ("多余", report.extra)) if items]
        console.print(Text(f"存在{'和'.join(problems)}的单据。", style="red"))
