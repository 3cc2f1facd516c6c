"""``dingdee dlq``: list, inspect and replay dead letters (DESIGN §6).

A thin layer over :mod:`dingdee_ops.dlq`: it turns options into a :class:`Selection` and
:class:`ReplayOptions`, runs the engine and prints the result. Kafka settings come from the same
``DINGDEE_KAFKA__*`` variables the services read. Record data is printed only through
:func:`dingdee_ops.terminal.safe` (control characters escaped, long values cut).
"""

from __future__ import annotations

import asyncio
import getpass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.text import Text

from dingdee_common.errors import FatalError
from dingdee_common.kafka.topics import STAGES, Topics
from dingdee_common.settings import KafkaSettings, ServiceSettings
from dingdee_ops.dlq import ReplayEngine, ReplayOptions, ReplayReport, Selection, parse_time
from dingdee_ops.dlq.records import DeadLetter
from dingdee_ops.dlq.render import letter_panel, render_report, summary_table
from dingdee_ops.dlq.scan import handled_offsets, read_audits, read_dead_letters, was_handled
from dingdee_ops.terminal import safe

__all__ = ["app"]

app = typer.Typer(help="死信队列：查看、检查与重放 (DESIGN §6)。", no_args_is_help=True)
console = Console()

StageOpt = Annotated[list[str] | None, typer.Option("--stage", help="阶段，可多次给出")]
SinceOpt = Annotated[str | None, typer.Option("--since", help="失败时间下限 (ISO 8601, 含)")]
UntilOpt = Annotated[str | None, typer.Option("--until", help="失败时间上限 (ISO 8601, 不含)")]
ClassOpt = Annotated[
    list[str] | None, typer.Option("--error-class", help="permanent / poison / exhausted")
]
TypeOpt = Annotated[list[str] | None, typer.Option("--error-type", help="dlq-error-type 的值")]
FlowOpt = Annotated[list[str] | None, typer.Option("--flow", help="流程 id")]
KeyOpt = Annotated[list[str] | None, typer.Option("--key", help="业务键 (消息 key) 或钉钉实例 ID")]
PatternOpt = Annotated[str | None, typer.Option("--pattern", help="错误说明的正则 (不区分大小写)")]
OffsetOpt = Annotated[list[int] | None, typer.Option("--offset", help="死信主题中的 offset")]


def _selection(
    stage: list[str] | None,
    since: str | None,
    until: str | None,
    error_class: list[str] | None,
    error_type: list[str] | None,
    flow: list[str] | None,
    key: list[str] | None,
    pattern: str | None,
    offset: list[int] | None = None,
) -> Selection:
    try:
        return Selection(
            stages=tuple(stage) if stage else STAGES,
            since=parse_time(since) if since else None,
            until=parse_time(until) if until else None,
            error_classes=frozenset(error_class or ()),
            error_types=frozenset(error_type or ()),
            flows=frozenset(flow or ()),
            keys=frozenset(key or ()),
            pattern=pattern,
            offsets=frozenset(offset or ()),
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _kafka() -> KafkaSettings:
    return ServiceSettings().kafka


def _fail(exc: FatalError) -> typer.Exit:
    console.print(Text("失败: ", style="red") + safe(str(exc), limit=None))
    return typer.Exit(1)


async def _read(
    kafka: KafkaSettings, stages: tuple[str, ...]
) -> tuple[list[DeadLetter], dict[str, set[int]]]:
    topics = Topics(kafka.topic_prefix)
    letters = await read_dead_letters(kafka, topics, stages)
    return letters, handled_offsets(await read_audits(kafka, topics))


def _chosen(selection: Selection) -> tuple[list[DeadLetter], dict[str, set[int]]]:
    """The dead letters that match ``selection``, and the offsets replays handled (read-only)."""
    try:
        letters, handled = asyncio.run(_read(_kafka(), selection.stages))
    except FatalError as exc:
        raise _fail(exc) from exc
    return [d for d in letters if selection.matches(d)], handled


@app.command("list")
def list_(
    stage: StageOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    error_class: ClassOpt = None,
    error_type: TypeOpt = None,
    flow: FlowOpt = None,
    key: KeyOpt = None,
    pattern: PatternOpt = None,
) -> None:
    """按阶段、错误类别/类型和流程统计死信条数，分待处理与已重放（只读）。"""
    selection = _selection(stage, since, until, error_class, error_type, flow, key, pattern)
    chosen, handled = _chosen(selection)
    console.print(summary_table(chosen, "死信统计", lambda d: was_handled(handled, d)))


@app.command("inspect")
def inspect(
    stage: StageOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    error_class: ClassOpt = None,
    error_type: TypeOpt = None,
    flow: FlowOpt = None,
    key: KeyOpt = None,
    pattern: PatternOpt = None,
    offset: OffsetOpt = None,
    limit: Annotated[int, typer.Option(help="最多显示几条")] = 5,
    full: Annotated[bool, typer.Option("--full", help="不截断长值（控制字符仍转义显示）")] = False,
    raw: Annotated[
        Path | None,
        typer.Option(
            "--raw",
            metavar="FILE",
            help="把第一条符合条件的死信的消息体原样（字节）写入 FILE",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """显示符合条件的死信：位置、状态、原因、全部消息头、key 与消息体（只读）。

    记录中的控制字符（ANSI 转义、NUL、双向文本控制符）一律转义显示，长值被截断；
    用 --full 显示全部，或用 --raw FILE 取得原始字节。
    """
    selection = _selection(stage, since, until, error_class, error_type, flow, key, pattern, offset)
    chosen, handled = _chosen(selection)
    for letter in chosen[:limit]:
        console.print(letter_panel(letter, full=full, replayed=was_handled(handled, letter)))
    console.print(f"符合条件 {len(chosen)} 条，显示 {min(limit, len(chosen))} 条。")
    if raw is not None and chosen:
        value = chosen[0].value or b""
        raw.write_bytes(value)
        where = f"已把 {chosen[0].coordinates} 的消息体原样（{len(value)} 字节）写入 "
        console.print(Text(where) + safe(str(raw), limit=None))


@app.command("replay")
def replay(
    stage: StageOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    error_class: ClassOpt = None,
    error_type: TypeOpt = None,
    flow: FlowOpt = None,
    key: KeyOpt = None,
    pattern: PatternOpt = None,
    offset: OffsetOpt = None,
    execute: Annotated[
        bool, typer.Option("--execute", help="真正重放；不加此项只做演练 (dry run)")
    ] = False,
    rate: Annotated[float, typer.Option(help="每秒最多重放条数 (0 = 不限)")] = 50.0,
    max_replays: Annotated[int, typer.Option(help="一条死信最多重放几次，超过则转入停放主题")] = 3,
    target_override: Annotated[
        str | None, typer.Option(help="有意改写目标主题（跳过允许列表检查）")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="本次最多处理几条（先小批试跑）")] = None,
    who: Annotated[str | None, typer.Option(help="审计记录中的操作人")] = None,
) -> None:
    """把死信按原样放回原主题；默认只演练，加 --execute 才写入。"""
    selection = _selection(stage, since, until, error_class, error_type, flow, key, pattern, offset)
    options = ReplayOptions(
        selection=selection,
        dry_run=not execute,
        rate_per_second=rate,
        max_replays=max_replays,
        target_override=target_override,
        limit=limit,
        who=who or _operator(),
    )
    kafka = _kafka()
    engine = ReplayEngine(kafka, Topics(kafka.topic_prefix))
    try:
        report = _run_with_progress(engine, options)
    except FatalError as exc:
        raise _fail(exc) from exc
    except KeyboardInterrupt:
        console.print(
            "[yellow]已中断。[/yellow]已被 broker 确认的副本已记入消费组位点与审计记录；"
            "其余死信仍在死信队列中，可重新运行本命令。"
        )
        raise typer.Exit(130) from None
    render_report(console, report)
    if report.dry_run:
        console.print("这是演练。确认无误后加 [bold]--execute[/bold] 正式重放。")


def _run_with_progress(engine: ReplayEngine, options: ReplayOptions) -> ReplayReport:
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("重放中", total=None, visible=not options.dry_run)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return asyncio.run(engine.run(options, progress=update))


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
