"""Readable (Chinese) terminal output of dead letters and replay runs, with rich."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import orjson
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from dingdee_common.dlq.records import DeadLetter
from dingdee_common.dlq.replay import Action, PlannedRecord, ReplayReport

__all__ = ["ACTION_LABELS", "letter_panel", "render_report", "summary_table"]

ACTION_LABELS = {
    Action.REPLAY: "重放到原主题",
    Action.PARK: "超过重放上限 → 停放主题",
    Action.REFUSE: "拒绝（目标主题不在允许列表）",
    Action.ALREADY: "此前已重放，跳过",
}
CLASS_LABELS = {"permanent": "永久错误", "poison": "无法解析", "exhausted": "重试耗尽"}


def _class(error_class: str) -> str:
    return (
        f"{error_class}（{CLASS_LABELS[error_class]}）"
        if error_class in CLASS_LABELS
        else error_class
    )


def summary_table(letters: Iterable[DeadLetter], title: str) -> Table:
    """Counts by stage, error class, error type and flow, most frequent first."""
    groups = Counter((d.stage, d.error_class, d.error_type, d.flow) for d in letters)
    table = Table(title=title, title_justify="left")
    for name in ("阶段", "错误类别", "错误类型", "流程", "条数"):
        table.add_column(name, justify="right" if name == "条数" else "left")
    for (stage, error_class, error_type, flow), count in groups.most_common():
        table.add_row(stage, _class(error_class), error_type, flow, str(count))
    table.caption = f"合计 {sum(groups.values())} 条"
    return table


def _pretty_value(value: bytes | None) -> str:
    if value is None:
        return "（空值）"
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        return value.decode("utf-8", errors="replace")
    return orjson.dumps(parsed, option=orjson.OPT_INDENT_2).decode()


def letter_panel(letter: DeadLetter, *, action: str | None = None) -> Panel:
    """One dead letter in full: where it is, why it failed, every header, key and value."""
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    rows = [
        ("位置", letter.coordinates),
        ("阶段", letter.stage),
        ("流程", letter.flow),
        ("业务键 (key)", letter.key_text or "（无）"),
        ("钉钉实例 ID", letter.source_id or "（无）"),
        ("错误类别", _class(letter.error_class)),
        ("错误类型", letter.error_type),
        ("错误说明", letter.error_message),
        ("失败时间", letter.failed_at.isoformat()),
        ("原主题", letter.original_topic or "（无）"),
        ("已重放次数", str(letter.replay_count)),
    ]
    if action:
        rows.append(("本次处理", ACTION_LABELS.get(action, action)))
    for label, value in rows:
        facts.add_row(label, Text(value))
    headers = Table("消息头", "值", title="全部消息头", title_justify="left")
    for name, raw in letter.headers:
        headers.add_row(name, Text(raw.decode("utf-8", errors="replace")))
    body = Text(_pretty_value(letter.value))
    return Panel(
        Group(facts, headers, Text("消息体:", style="bold"), body), title=letter.coordinates
    )


def _plan_table(report: ReplayReport) -> Table:
    table = Table(title="按错误分组", title_justify="left")
    for name in ("阶段", "错误类别", "错误类型", "流程", "处理方式", "条数"):
        table.add_column(name, justify="right" if name == "条数" else "left")
    for (stage, error_class, error_type, flow, action), count in report.groups.most_common():
        label = ACTION_LABELS.get(action, action)
        table.add_row(stage, _class(error_class), error_type, flow, label, str(count))
    return table


def render_report(console: Console, report: ReplayReport, *, show_sample: bool = True) -> None:
    """Print a replay plan (dry run) or the result of a real run."""
    mode = "演练（dry run，未写入任何消息）" if report.dry_run else "正式重放"
    console.print(f"[bold]重放批次[/bold] {report.run_id}  模式: {mode}")
    console.print(_plan_table(report))
    planned = ", ".join(f"{ACTION_LABELS.get(k, k)} {v} 条" for k, v in report.planned.items())
    console.print(f"计划: {planned or '没有符合条件的死信'}")
    if report.targets:
        targets = ", ".join(f"{topic} ({n})" for topic, n in report.targets.items())
        console.print(f"目标主题: {targets}")
    if show_sample and report.sample:
        console.print(f"[bold]样例（前 {len(report.sample)} 条）[/bold]")
        for item in report.sample:
            console.print(_sample_line(item))
    if report.planned.get(Action.REFUSE):
        console.print(
            "[yellow]被拒绝的死信留在队列中。[/yellow]原主题不是可重放的 Kafka 主题（例如抽取阶段的"
            " dingtalk.processinstance.get）：修复原因后由抽取器的补漏/回填重新获取；确需改投其他"
            "主题时用 --target-override。"
        )
    if not report.dry_run:
        done = ", ".join(f"{ACTION_LABELS.get(k, k)} {v} 条" for k, v in report.done.items())
        console.print(f"结果: {report.outcome}；已由 broker 确认: {done or '无'}")


def _sample_line(item: PlannedRecord) -> Text:
    letter = item.letter
    return Text(
        f"  {letter.coordinates}  key={letter.key_text}  {letter.error_type}: "
        f"{letter.error_message[:120]}  → {ACTION_LABELS.get(item.action, item.action)}"
        + (f" ({item.target})" if item.target else "")
    )
