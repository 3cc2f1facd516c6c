"""``dingdee doctor``: check every flow against the configured DingTalk and Kingdee before a record
moves (credentials, templates, form keys, the call budget). Needs no Kafka.

The checks belong to the services (``dingdee_extractor.doctor``, ``dingdee_loader.doctor``; the
transformer's compiled flows say what each mapping reads and writes). Settings are the services'
own (``DINGDEE_DINGTALK__*``, ``DINGDEE_EVENTS__*``, ``DINGDEE_POLL__*``,
``DINGDEE_KINGDEE__*``, ``DINGDEE_FLOWS_FILE``).

Exit codes: 0 no error (warnings allowed); 1 at least one error.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from dingdee_common.doctor import Check, exit_code, render
from dingdee_common.errors import FatalError
from dingdee_extractor.dingtalk.client import DingTalkClient
from dingdee_extractor.doctor import dingtalk_checks
from dingdee_extractor.flows import load_sources
from dingdee_extractor.metrics import ExtractorMetrics
from dingdee_extractor.settings import ExtractorSettings
from dingdee_loader.doctor import FormTarget, kingdee_checks
from dingdee_loader.settings import LoaderSettings
from dingdee_transformer.flowspec import load_compiled
from dingdee_transformer.reads import form_reads, target_keys

__all__ = ["doctor", "run_checks"]


def _settings_error(part: str, exc: ValidationError) -> Check:
    where = "; ".join(
        f"DINGDEE_{'__'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
    )
    return Check(part, "settings", "environment", "error", f"{where}: set it and run again")


async def _dingtalk(flows_file: Path | None, reads: dict[str, Any]) -> list[Check]:
    try:
        settings = ExtractorSettings()
    except ValidationError as exc:
        return [_settings_error("dingtalk", exc)]
    path = flows_file or settings.flows_file
    try:
        sources = load_sources(path, frozenset(settings.dingtalk.apps))
    except FatalError as exc:
        return [Check("config", "flows", str(path), "error", exc.message)]
    client = DingTalkClient(settings.dingtalk, ExtractorMetrics.create(CollectorRegistry()))
    try:
        return await dingtalk_checks(settings, sources, client, reads)
    finally:
        await client.aclose()


async def _kingdee(targets: list[FormTarget]) -> list[Check]:
    try:
        settings = LoaderSettings()
    except ValidationError as exc:
        return [_settings_error("kingdee", exc)]
    return await kingdee_checks(settings.kingdee, targets)


async def run_checks(flows_file: Path | None = None) -> list[Check]:
    """Every check of ``dingdee doctor``: the flows file, DingTalk (with the quota), Kingdee."""
    path = flows_file or Path(os.environ.get("DINGDEE_FLOWS_FILE", "config/flows.yaml"))
    try:
        compiled = load_compiled(path)
    except FatalError as exc:
        return [
            Check("config", str(path), "flows", "error", line) for line in exc.message.splitlines()
        ]
    checks = [Check("config", "flows", str(path), "ok", f"{len(compiled)} enabled flow(s) compile")]
    reads: dict[str, Any] = {flow.id: form_reads(flow) for flow in compiled.values()}
    targets = [FormTarget(f.id, f.target.form_id, target_keys(f)) for f in compiled.values()]
    checks += await _dingtalk(path, reads)
    checks += await _kingdee(targets)
    return checks


def doctor(
    flows_file: Annotated[
        Path | None,
        typer.Option("--flows", help="flows.yaml to check (default: DINGDEE_FLOWS_FILE)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object, for CI")] = False,
) -> None:
    """Check every flow against the configured DingTalk and Kingdee, and the call budget.

    One line per check (ok / warning / error with what to do); exits 1 on any error. Needs the
    services' settings (DINGDEE_DINGTALK__*, DINGDEE_EVENTS__*, DINGDEE_KINGDEE__*), not Kafka.
    """
    checks = asyncio.run(run_checks(flows_file))
    code = exit_code(checks)
    if as_json:
        payload = {"ok": code == 0, "checks": [c.as_json() for c in checks]}
        typer.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())
    else:
        typer.echo(render(checks))
        errors = sum(c.level == "error" for c in checks)
        warnings = sum(c.level == "warning" for c in checks)
        typer.echo(f"{len(checks)} checks: {errors} error(s), {warnings} warning(s)")
    raise typer.Exit(code)
