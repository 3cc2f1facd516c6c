"""``dingdee refdata``: live reference data (issue #14) as the pipeline holds it.

``status`` reads every ``refdata.<source>`` topic and ``transformer.parked`` (what the
transformer rebuilds its tables from) and prints each source with its owner, rows by status, last
full refresh, and the records parked waiting for it with their reasons; ``sync`` asks the owners
for a full refresh now (``refdata.requests``); ``lookup T KEY`` resolves one key the way a
mapping rule would and says where the answer came from. Record content is printed terminal-safe.

Exit codes: 0 ok; 1 a lookup found nothing usable; 2 bad arguments or settings.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from dingdee_common.errors import FatalError
from dingdee_common.flows import FlowsFile, load_flows
from dingdee_common.kafka.clients import make_producer
from dingdee_common.kafka.reading import read_topic
from dingdee_common.kafka.topics import Topics
from dingdee_common.refdata import RefRequest, decode_row, encode_request
from dingdee_common.refpublish import MARKER_KEY
from dingdee_common.runtime import settings_or_exit
from dingdee_common.settings import ServiceSettings
from dingdee_ops.terminal import safe
from dingdee_transformer.refstore import ORIGIN, STATUS, LiveLookup, RefStore, row_values
from dingdee_transformer.rules import LookupProblem

__all__ = ["app"]

app = typer.Typer(help="Live reference data: sources, refreshes, parked records, lookups.")
console = Console()
FlowsOption = Annotated[Path, typer.Option("--flows", help="flows.yaml")]
DEFAULT_FLOWS = Path("config/flows.yaml")


def _flows(path: Path) -> FlowsFile:
    try:
        return load_flows(path)
    except FatalError as exc:
        console.print(safe(exc.message, style="red"))
        raise typer.Exit(2) from None


async def _load(settings: ServiceSettings, flows: FlowsFile) -> tuple[RefStore, dict[str, Any]]:
    """The store as the transformer rebuilds it, plus each source's last refresh marker."""
    topics = Topics(settings.kafka.topic_prefix)
    store = RefStore(flows.references())
    markers: dict[str, Any] = {}
    for name in store.tables:
        for record in await read_topic(settings.kafka, topics.refdata(name)):
            key = (record.key or b"").decode()
            row = decode_row(record.value) if record.value is not None else None
            if key == MARKER_KEY:
                markers[name] = row
            elif key:
                store.apply(name, key, row)
    return store, markers


async def _parked(settings: ServiceSettings) -> dict[bytes, dict[str, str]]:
    alive: dict[bytes, dict[str, str]] = {}
    topics = Topics(settings.kafka.topic_prefix)
    for record in await read_topic(settings.kafka, topics.parked):
        if record.key is None:
            continue
        if record.value is None:
            alive.pop(record.key, None)
        else:
            alive[record.key] = {k: v.decode(errors="replace") for k, v in record.headers or ()}
    return alive


@app.command()
def status(flows_file: FlowsOption = DEFAULT_FLOWS) -> None:
    """Sources, sizes, owners, last refresh, and the records parked per source and reason."""
    settings = settings_or_exit(ServiceSettings, "dingdee")
    flows = _flows(flows_file)
    store, markers = asyncio.run(_load(settings, flows))
    parked = asyncio.run(_parked(settings))
    waiting: Counter[str] = Counter()
    reasons: dict[str, Counter[str]] = {}
    oldest = time.time()
    for headers in parked.values():
        oldest = min(oldest, float(headers.get("dingdee-parked-first-at") or oldest))
        for source in {w[0] for w in orjson.loads(headers.get("dingdee-parked-waits", "[]"))}:
            waiting[source] += 1
            why = headers.get("dingdee-parked-reason", "").split(": ", 1)[-1]
            reasons.setdefault(source, Counter())[why] += 1
    table = Table(title=f"{len(store.tables)} reference source(s)", title_justify="left")
    for column in ("source", "owner", "rows", "disabled", "unaudited", "last refresh", "parked"):
        table.add_column(column)
    for name, t in store.tables.items():
        statuses = Counter(row[STATUS] for row in t.rows.values())
        marker = markers.get(name)
        last = "never"
        if marker is not None:
            age = time.time() - float(marker.fields.get("at") or 0)
            last = f"{age:.0f}s ago ({marker.fields.get('rows')} rows, {marker.origin})"
        table.add_row(
            name, t.spec.owner, str(len(t.rows)), str(statuses["forbidden"]),
            str(statuses["unaudited"]), last, str(waiting[name]),
        )  # fmt: skip
    console.print(table)
    if parked:
        console.print(f"{len(parked)} parked record(s), oldest {time.time() - oldest:.0f}s")
        for source, counts in reasons.items():
            for why, n in counts.most_common(5):
                console.print(safe(f"  {source} ×{n}: {why}", limit=300))


@app.command()
def sync(
    table: Annotated[str | None, typer.Option("--table", help="one source")] = None,
    flows_file: FlowsOption = DEFAULT_FLOWS,
) -> None:
    """Ask the owners (loader: Kingdee; extractor: DingTalk) for a full refresh now."""
    settings = settings_or_exit(ServiceSettings, "dingdee")
    sources = list(_flows(flows_file).references().sources)
    if table is not None and table not in sources:
        console.print(safe(f"no source {table!r}; sources: {', '.join(sources)}", style="red"))
        raise typer.Exit(2)
    chosen = [table] if table else sources

    async def send() -> None:
        producer = make_producer(settings.kafka)
        await producer.start()
        try:
            topic = Topics(settings.kafka.topic_prefix).refdata_requests
            for name in chosen:
                request = RefRequest(source=name, reason="dingdee refdata sync")
                await producer.send_and_wait(topic, encode_request(request))
        finally:
            await producer.stop()

    asyncio.run(send())
    for name in chosen:
        console.print(safe(f"{name}: refresh requested"))


@app.command()
def lookup(
    table: Annotated[str, typer.Argument(help="a lookup (staff) or a source (kingdee_employees)")],
    key: Annotated[str, typer.Argument(help="the value a rule would look up")],
    flows_file: FlowsOption = DEFAULT_FLOWS,
) -> None:
    """Resolve KEY as a mapping rule would; show the row and where it came from."""
    settings = settings_or_exit(ServiceSettings, "dingdee")
    flows = _flows(flows_file)
    refs = flows.references()
    if table not in refs.lookups and table not in refs.sources:
        if key in flows.reference_tables.get(table, {}):
            console.print(safe(f"{key} → {flows.reference_tables[table][key]} (static table)"))
            return
        console.print(safe(f"no lookup or source {table!r}", style="red"))
        raise typer.Exit(2)
    store, _ = asyncio.run(_load(settings, flows))
    if table in refs.sources:
        _show_row(store, table, key)
        return
    live = LiveLookup(table, refs.lookups[table], store, flows.reference_tables.get(table))
    try:
        value = live.get(key)
    except LookupProblem as exc:
        console.print(safe(str(exc), style="red"))
        raise typer.Exit(1) from None
    if value is None:
        console.print(safe(live.explain(key)[0], style="yellow"))
        raise typer.Exit(1)
    where = (
        "static table (override)" if key in live.static else f"live: {refs.lookups[table].source}"
    )
    console.print(safe(f"{key} → {value}  ({where})"))
    if live.via is not None and key in live.via.rows:
        _show_row(store, live.via.name, key)
    found = live.target.find(live.target.spec.key_field, value) or live.target.find(
        refs.lookups[table].value, value
    )
    for k in found[:1]:
        _show_row(store, live.target.name, k)


def _show_row(store: RefStore, source: str, key: str) -> None:
    t = store.tables[source]
    row = t.rows.get(key)
    if row is None:
        console.print(safe(f"{source}: no row {key}", style="yellow"))
        raise typer.Exit(1)
    fields = ", ".join(f"{f}={v}" for f, v in zip(t.fields, row_values(row), strict=True) if v)
    console.print(safe(f"{source} {key} [{row[STATUS]}] {fields}", limit=500))
    console.print(safe(f"  from {row[ORIGIN] or '?'}"))
