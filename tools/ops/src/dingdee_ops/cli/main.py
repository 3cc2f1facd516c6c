"""``dingdee``: the operator's command line (topics, mapping, dead letters, reconciliation, quota,
reference data, doctor, backfill) and the web console.

Each sub-command group is a module of this package; the checks and mappings they run are the
services' own code, imported like any other dependency.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import typer

from dingdee_common.flows import load_flows
from dingdee_common.kafka.topics import Topics, provision
from dingdee_common.settings import ServiceSettings
from dingdee_ops.cli import backfill as backfill_cli
from dingdee_ops.cli import dlq, mapping, quota, reconcile, refdata
from dingdee_ops.cli.console import console
from dingdee_ops.cli.doctor import doctor

app = typer.Typer(
    name="dingdee",
    help="dingdee: DingTalk approvals → Kafka → Kingdee bills. Operator tools.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
topics_app = typer.Typer(help="Kafka topics of DESIGN §2.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
app.add_typer(mapping.app, name="mapping")
app.add_typer(dlq.app, name="dlq")
app.command("reconcile")(reconcile.app)
app.add_typer(quota.app, name="quota")
app.add_typer(refdata.app, name="refdata")
app.command("doctor")(doctor)
app.command("backfill", help=backfill_cli.HELP)(backfill_cli.backfill)
app.command("console")(console)


@topics_app.command("create")
def topics_create() -> None:
    """Create every dingdee topic that does not exist yet (idempotent), with one compacted
    ``refdata.<source>`` topic per reference source of ``DINGDEE_FLOWS_FILE``."""
    settings = ServiceSettings()
    topics = Topics(settings.kafka.topic_prefix)
    flows = Path(os.environ.get("DINGDEE_FLOWS_FILE", "config/flows.yaml"))
    sources = load_flows(flows).references().sources if flows.exists() else {}
    extra = topics.refdata_specs(sources)  # one compacted topic per reference source
    created = asyncio.run(provision(settings.kafka, topics, extra=extra))
    names = [*topics.specs(settings.kafka.partitions), *extra]
    for spec in names:
        state = "created" if spec.name in created else "exists"
        typer.echo(f"{spec.name:40s} partitions={spec.partitions:<3d} {state}")


def main() -> None:
    app()
