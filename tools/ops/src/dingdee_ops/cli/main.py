"""``dingdee``: the operator's command line (topics, mapping, dead letters, reconciliation, quota,
doctor).

Sub-command groups that belong to one service live in that service's package and are attached here
when the package is installed, so each concept has one home.
"""

from __future__ import annotations

import asyncio
import importlib

import typer

from dingdee_common.kafka.topics import Topics, provision
from dingdee_common.settings import ServiceSettings

app = typer.Typer(
    name="dingdee",
    help="dingdee: DingTalk approvals → Kafka → Kingdee bills. Operator tools.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
topics_app = typer.Typer(help="Kafka topics of DESIGN §2.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")

# (module, attribute, command name): optional sub-apps contributed by other packages.
_PLUGINS = (
    ("dingdee_transformer.cli", "app", "mapping"),
    ("dingdee_common.cli.dlq", "app", "dlq"),
    ("dingdee_common.cli.reconcile", "app", "reconcile"),
    ("dingdee_common.cli.quota", "app", "quota"),
    ("dingdee_common.cli.doctor", "doctor", "doctor"),
)


@topics_app.command("create")
def topics_create() -> None:
    """Create every dingdee topic that does not exist yet (idempotent)."""
    settings = ServiceSettings()
    created = asyncio.run(provision(settings.kafka))
    names = Topics(settings.kafka.topic_prefix).specs(settings.kafka.partitions)
    for spec in names:
        state = "created" if spec.name in created else "exists"
        typer.echo(f"{spec.name:40s} partitions={spec.partitions:<3d} {state}")


def _attach_plugins() -> None:
    for module_name, attr, name in _PLUGINS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue
            raise
        sub = getattr(module, attr)
        if isinstance(sub, typer.Typer):
            app.add_typer(sub, name=name)
        else:
            app.command(name)(sub)


def main() -> None:
    _attach_plugins()
    app()
