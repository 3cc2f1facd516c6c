"""``dingdee dlq``: list, inspect and replay dead letters (DESIGN §6).

A thin layer over :mod:`dingdee_common.dlq`: it turns options into a :class:`Selection` and
:class:`ReplayOptions`, runs the engine and prints the result. Kafka settings come from the same
``DINGDEE_KAFKA__*`` variables the services read.
"""

from __future__ import annotations

import asyncio
import getpass
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from dingdee_common.dlq import ReplayEngine, ReplayOptions, ReplayReport, Selection, parse_time
from dingdee_common.dlq.records import DeadLetter
from dingdee_common.dlq.render import letter_panel, render_report, summary_table
from dingdee_common.dlq.scan import read_dead_letters
from dingdee_common.errors import FatalError
from dingdee_common.kafka.topics import STAGES, Topics
from dingdee_common.settings import KafkaSettings, ServiceSettings

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
    console.print(f"[red]失败:[/red] {exc}")
    return typer.Exit(1)


def _chosen(selection: Selection) -> list[DeadLetter]:
    """The dead letters of the selected stages that match ``selection`` (read-only)."""
    kafka = _kafka()
    try:
        letters = asyncio.run(
            read_dead_letters(kafka, Topics(kafka.topic_prefix), selection.stages)
        )
    except FatalError as exc:
        raise _fail(exc) from exc
    return [d for d in letters if selection.matches(d)]


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
    """按阶段、错误类别/类型和流程统计死信条数（只读）。"""
    selection = _selection(stage, since, until, error_class, error_type, flow, key, pattern)
    chosen = _chosen(selection)
    console.print(summary_table(chosen, "死信统计"))


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
) -> None:
    """完整显示符合条件的死信：位置、原因、全部消息头、key 与消息体（只读）。"""
    selection = _selection(stage, since, until, error_class, error_type, flow, key, pattern, offset)
    chosen = _chosen(selection)
    for letter in chosen[:limit]:
        console.print(letter_panel(letter))
    console.print(f"符合条件 {len(chosen)} 条，显示 {min(limit, len(chosen))} 条。")


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
