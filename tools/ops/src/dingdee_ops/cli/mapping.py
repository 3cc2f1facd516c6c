"""``dingdee mapping …``: check a flows file and preview what one approval becomes in Kingdee.

Attached to the ``dingdee`` CLI by ``dingdee_ops.cli.main``; this is the tool a finance-IT person
uses while writing a mapping, so its output is meant to be read, not parsed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.highlighter import JSONHighlighter
from rich.table import Table
from rich.text import Text

from dingdee_common import codec
from dingdee_common.contracts.v1 import ApprovalSnapshot
from dingdee_common.errors import FatalError
from dingdee_ops.terminal import plain, safe
from dingdee_transformer.flowspec import CompiledFlow, load_compiled
from dingdee_transformer.mapping import LinkedChangeError, MappingError, Skip, map_snapshot

__all__ = ["app", "snapshot_from_json"]

app = typer.Typer(
    help="Check flows.yaml mappings and preview the Kingdee bill of one approval.",
    no_args_is_help=True,
)


def _out() -> Console:
    return Console()


def _err() -> Console:
    return Console(stderr=True)


DEFAULT_FLOWS = Path("config/flows.yaml")


def _load(path: Path) -> dict[str, CompiledFlow]:
    try:
        return load_compiled(path)
    except FatalError as exc:
        _err().print(Text("✗ ", style="bold red") + safe(str(path), style="bold red"))
        for line in exc.message.splitlines():
            _err().print(Text("  • ", style="red") + safe(line, limit=None), highlight=False)
        raise typer.Exit(1) from exc


@app.command("check")
def check(
    flows_file: Annotated[Path, typer.Argument(help="the flows.yaml to validate")] = DEFAULT_FLOWS,
) -> None:
    """Validate every flow's target and mapping; exit 1 with one line per problem."""
    flows = _load(flows_file)
    table = Table(title=f"{flows_file}: {len(flows)} flow(s) OK", title_justify="left")
    for column in ("flow", "process_code", "Kingdee form", "bill key", "fields"):
        table.add_column(column, overflow="fold")
    for flow in flows.values():
        table.add_row(
            safe(flow.id),
            safe(flow.process_code),
            safe(flow.target.form_id),
            safe(f"{flow.target.number_field} = {flow.target.bill_key}"),
            str(len(flow.mapping.fields)),
        )
    _out().print(table)


def snapshot_from_json(data: Any, flow: CompiledFlow) -> ApprovalSnapshot:
    """An :class:`ApprovalSnapshot` from a snapshot, a ``processinstance/get`` answer or the bare
    ``process_instance`` object (the id, when DingTalk left it out, becomes ``preview``).

    Raises:
        ValueError: ``data`` is none of these.
    """
    if not isinstance(data, dict):
        raise ValueError("the instance file must hold a JSON object")
    if "instance" in data and "schema_version" in data:
        return ApprovalSnapshot.model_validate(data)
    instance = data.get("process_instance", data)
    if not isinstance(instance, dict):
        raise ValueError("process_instance is not an object")
    return ApprovalSnapshot(
        flow=flow.id,
        process_code=flow.process_code,
        process_instance_id=str(data.get("process_instance_id") or "preview"),
        business_id=instance.get("business_id"),
        status=str(instance.get("status") or ""),
        result=instance.get("result") or None,
        biz_action=str(instance.get("biz_action") or "NONE"),
        fetched_at=datetime.now(UTC),
        fingerprint="preview",
        instance=instance,
    )


def _print_errors(exc: MappingError) -> None:
    title = f"✗ {len(exc.errors)} problem(s) in approval {plain(exc.business_id)}"
    table = Table(title=Text(title))
    for column in ("Kingdee field", "form field", "problem", "rule"):
        table.add_column(column, overflow="fold")
    for err in exc.errors:
        table.add_row(safe(err.target), safe(err.label), safe(err.problem), safe(err.rule))
    _err().print(table, style="red")


@app.command("preview")
def preview(
    flow: Annotated[str, typer.Option("--flow", help="flow id in flows.yaml")],
    instance: Annotated[Path, typer.Option("--instance", help="approval JSON file")],
    flows_file: Annotated[Path, typer.Option("--flows", help="flows.yaml")] = DEFAULT_FLOWS,
) -> None:
    """Print the Kingdee save request one approval becomes, or its exact validation errors.

    Exit codes: 0 a bill, 1 validation errors (or a bad file), 3 the approval is skipped.
    """
    flows = _load(flows_file)
    if flow not in flows:
        known = ", ".join(sorted(flows))
        _err().print(safe(f"no flow {flow!r} in {flows_file}; flows: {known}", style="red"))
        raise typer.Exit(1)
    try:  # numbers as Decimals: a float would change an amount before it is even mapped
        data = codec.loads(instance.read_bytes(), exact=True)
        snap = snapshot_from_json(data, flows[flow])
    except (OSError, ValueError, ValidationError) as exc:
        _err().print(safe(f"cannot read {instance}: {exc}", limit=None, style="red"))
        raise typer.Exit(1) from exc
    try:
        result = map_snapshot(flows[flow], snap)
    except MappingError as exc:
        _print_errors(exc)
        raise typer.Exit(1) from exc
    except LinkedChangeError as exc:
        _err().print(safe(f"✗ dead letter: {exc.message}", limit=None, style="red"))
        raise typer.Exit(1) from exc
    if isinstance(result, Skip):
        _err().print(safe(f"skipped: {result.reason} (no bill is made)", style="yellow"))
        raise typer.Exit(3)
    request = {"formid": result.form_id, "data": {**result.save_options, "Model": result.model}}
    head = f"({result.number_field}) → {result.form_id}"
    _err().print(Text("✓ bill ", style="green") + safe(result.bill_key, style="green"), safe(head))
    # the request's exact bytes, amounts included (rich's print_json would re-read them as floats);
    # JSON escapes C0 controls itself, the terminal helper the rest (C1, bidi, invisible marks)
    body = safe(codec.dumps(request, indent=True).decode(), limit=None, multiline=True)
    _out().print(JSONHighlighter()(body), soft_wrap=True)
