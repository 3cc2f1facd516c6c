"""Readable (Chinese) terminal output of dead letters and replay runs, with rich.

Everything taken from a record (key, headers, value, error text, flow …) goes through
:func:`dingdee_ops.terminal.safe`; nothing here builds rich markup from record data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

import orjson
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from dingdee_ops.dlq.records import DeadLetter
from dingdee_ops.dlq.replay import Action, PlannedRecord, ReplayReport
from dingdee_ops.terminal import BODY_LIMIT, FIELD_LIMIT, safe

__all__ = ["ACTION_LABELS", "letter_panel", "render_report", "summary_table"]

ACTION_LABELS = {
    Action.REPLAY: "重放到原主题",
    Action.PARK: "超过重放上限 → 停放主题",
    Action.REFUSE: "拒绝（目标主题不在允许列表）",
    Action.ALREADY: "此前已重放，跳过",
}
CLASS_LABELS = {"permanent": "永久错误", "poison": "无法解析", "exhausted": "重试耗尽"}
FULL_HINT = "加 --full 显示全部，或 --raw FILE 保存原始字节"


def _class(error_class: str) -> Text:
    label = CLASS_LABELS.get(error_class)
    return safe(f"{error_class}（{label}）" if label else error_class)


def summary_table(
    letters: Iterable[DeadLetter], title: str, replayed: Callable[[DeadLetter], bool]
) -> Table:
    """Counts by stage, error class, error type and flow, most frequent first.

    Each group is split into pending dead letters and those an earlier replay run already put
    back (or parked), as its ``dlq.replay.audit`` record says; a copy that failed again after a
    replay is a new, pending dead letter.
    """
    groups: Counter[tuple[str, str, str, str]] = Counter()
    done: Counter[tuple[str, str, str, str]] = Counter()
    for letter in letters:
        group = (letter.stage, letter.error_class, letter.error_type, letter.flow)
        groups[group] += 1
        done[group] += replayed(letter)
    table = Table(title=title, title_justify="left")
    for name in ("阶段", "错误类别", "错误类型", "流程", "待处理", "已重放/停放"):
        table.add_column(name, justify="right" if name in ("待处理", "已重放/停放") else "left")
    for (stage, error_class, error_type, flow), count in groups.most_common():
        handled = done[(stage, error_class, error_type, flow)]
        cells = (safe(stage), _class(error_class), safe(error_type), safe(flow))
        table.add_row(*cells, str(count - handled), str(handled))
    total, handled_total = sum(groups.values()), sum(done.values())
    table.caption = (
        f"合计 {total} 条：待处理 {total - handled_total} 条，已重放/停放 {handled_total} 条"
    )
    return table


def _pretty_value(value: bytes | None) -> str | bytes:
    if value is None:
        return "（空值）"
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        return value
    return orjson.dumps(parsed, option=orjson.OPT_INDENT_2).decode()


def letter_panel(
    letter: DeadLetter, *, action: str | None = None, full: bool = False, replayed: bool = False
) -> Panel:
    """One dead letter: where it is, why it failed, every header, key and value.

    Long values are cut (the body after :data:`BODY_LIMIT` characters) unless ``full``.
    """
    field_limit = None if full else FIELD_LIMIT
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    rows: list[tuple[str, str | bytes | Text]] = [
        ("位置", letter.coordinates),
        ("状态", "已重放/停放（见 dlq.replay.audit）" if replayed else "待处理"),
        ("阶段", letter.stage),
        ("流程", letter.flow),
        ("业务键 (key)", letter.key if letter.key is not None else "（无）"),
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
        cell = value if isinstance(value, Text) else safe(value, limit=field_limit, hint=FULL_HINT)
        facts.add_row(label, cell)
    headers = Table("消息头", "值", title="全部消息头", title_justify="left")
    for name, raw in letter.headers:
        headers.add_row(safe(name), safe(raw, limit=field_limit, hint=FULL_HINT))
    body = safe(
        _pretty_value(letter.value),
        limit=None if full else BODY_LIMIT,
        multiline=True,
        hint=FULL_HINT,
    )
    return Panel(
        Group(facts, headers, Text("消息体:", style="bold"), body),
        title=safe(letter.coordinates),
    )


def _plan_table(report: ReplayReport) -> Table:
    table = Table(title="按错误分组", title_justify="left")
    for name in ("阶段", "错误类别", "错误类型", "流程", "处理方式", "条数"):
        table.add_column(name, justify="right" if name == "条数" else "left")
    for (stage, error_class, error_type, flow, action), count in report.groups.most_common():
        label = ACTION_LABELS.get(action, action)
        cells = (safe(stage), _class(error_class), safe(error_type), safe(flow), safe(label))
        table.add_row(*cells, str(count))
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
        console.print(Text("目标主题: ") + safe(targets, limit=2 * FIELD_LIMIT))
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
    return Text("  ") + safe(
        f"{letter.coordinates}  key={letter.key_text}  {letter.error_type}: "
        f"{letter.error_message[:120]}  → {ACTION_LABELS.get(item.action, item.action)}"
        + (f" ({item.target})" if item.target else ""),
        limit=2 * FIELD_LIMIT,
    )
