"""A real Prometheus scrapes the three services during a pipeline run; every dashboard query and
every alert expression is evaluated through its HTTP API and must return data.

This is what catches a panel that is silently empty because of a wrong metric name or label.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from dingdee_common.errors import ErrorClass
from dingdee_common.kafka import headers as hdr
from dingdee_common.kafka.clients import make_producer
from dingdee_common.kafka.dlq import DeadLetterPublisher, SourceRecord
from dingdee_dev.broker import free_port
from dingdee_dev.procs import ManagedProcess, wait_http_ok
from dingdee_dev.stack import SERVICES, Stack, StackConfig
from dingdee_ops.dlq import Action, ReplayEngine, ReplayOptions, Selection
from dingdee_sandbox.demo_org import DEMO_APP
from tests.helpers import poll_until
from tests.integration.test_dlq_replay import read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
OBS = ROOT / "k8s" / "observability"
RULES = OBS / "rules" / "dingdee.rules.yml"
_COMPARISON = re.compile(r"\s*(>=|<=|==|!=|>|<)\s*[0-9.e+-]+\s*$")
_GRAFANA_VARS = {"$flow": ".*", "$__rate_interval": "1m", "$__interval": "15s"}


def dashboard_queries() -> Iterator[tuple[str, str]]:
    """``(dashboard/panel title, PromQL)`` of every panel target, Grafana variables filled in."""
    for path in sorted((OBS / "dashboards").glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        for panel in board["panels"]:
            for target in panel["targets"]:
                expr = target["expr"]
                for var, value in _GRAFANA_VARS.items():
                    expr = expr.replace(var, value)
                yield f"{path.stem}/{panel['title']}", expr


def alert_expressions() -> Iterator[tuple[str, str, str]]:
    """``(alert, full expression, the expression without its threshold)``."""
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    for rule in (r for g in groups for r in g["rules"]):
        expr = " ".join(rule["expr"].split())
        yield rule["alert"], expr, _COMPARISON.sub("", expr)


class Prometheus:
    """The Debian ``prometheus`` server on 127.0.0.1, scraping given targets every second."""

    def __init__(self, workdir: Path, targets: dict[str, str]) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("the prometheus server is missing: run `make promtool` (Debian prometheus)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        shutil.copy(RULES, workdir / "dingdee.rules.yml")
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["dingdee.rules.yml"],
            "scrape_configs": [
                {"job_name": f"dingdee-{name}", "static_configs": [{"targets": [target]}]}
                for name, target in targets.items()
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
        self.process = ManagedProcess(
            "prometheus",
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            log_path=workdir / "prometheus.log",
            cwd=workdir,
        )

    async def __aenter__(self) -> Prometheus:
        self.process.start()
        await wait_http_ok(
            f"{self.url}/-/ready", timeout=60, process=self.process, what="prometheus"
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.process.stop()

    async def api(self, path: str, **params: str) -> Any:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            response = await client.get(f"/api/v1/{path}", params=params)
        body = response.json()
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    async def series(self, expr: str) -> list[Any]:
        return list((await self.api("query", query=expr))["result"])


async def inject_poison(stack: Stack) -> None:
    """One undecodable approval, so the dead-letter series exist (a clean demo makes none)."""
    producer = make_producer(stack.kafka)
    await producer.start()
    try:
        headers = hdr.build("petty-cash", "obs-poison-1")
        await producer.send_and_wait(
            stack.topics.approvals_raw, b"{not json", key=b"obs-poison-1", headers=headers
        )
    finally:
        await producer.stop()


async def replay_one_bill(stack: Stack) -> None:
    """Dead-letter a real bill and replay it: the loader's existence check runs (prechecks)."""
    rows = await read_topic(stack.kafka, stack.topics.bills_ready)
    key, value, headers = rows[0]
    producer = make_producer(stack.kafka)
    await producer.start()
    try:
        record = SourceRecord(stack.topics.bills_ready, 0, 0, key, value, headers)
        await DeadLetterPublisher(producer, stack.topics, "loader").publish(
            record, error_class=ErrorClass.EXHAUSTED, error_type="kingdee_timeout", message="超时"
        )
    finally:
        await producer.stop()
    selection = Selection(stages=("loader",), keys=frozenset({(key or b"").decode()}))
    options = ReplayOptions(selection=selection, dry_run=False)
    report = await ReplayEngine(stack.kafka, stack.topics).run(options)
    assert report.done.get(Action.REPLAY, 0) >= 1


async def test_every_panel_and_alert_query_returns_data(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # a 5 MB attachment limit, so the demo files over it are refused and the attachment dead-letter
    # panel has data; static tables absent, so live lookups miss and the reference-data panels too
    flows = tmp_path / "flows.yaml"
    flows.write_text(
        (ROOT / "config" / "flows.yaml")
        .read_text(encoding="utf-8")
        .replace("max_bytes: 20000000", "max_bytes: 5000000"),
        encoding="utf-8",
    )
    config = StackConfig(
        workdir=tmp_path / "stack",
        flows_file=flows,
        demo=40,
        seed=5,
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"obs{tmp_path.name[-6:]}.",
        # some Kingdee 5xx answers, so the error panels and retries have data
        kingdee_args=("--http-5xx-rate", "0.05", "--seed", "1"),
        dingtalk_args=("--busy-rate", "0.05"),
        service_env={
            "extractor": {
                # a tight DingTalk rate, so the rate-limit panels see waits
                "DINGDEE_DINGTALK__QPS": "4",
                # events on and a monthly budget, so the event and budget alerts have series
                "DINGDEE_EVENTS__ENABLED": "true",
                "DINGDEE_EVENTS__POLL_INTERVAL_SECONDS": "5",
                "DINGDEE_DINGTALK__APPS": json.dumps(
                    {
                        DEMO_APP.name: {
                            "app_key": DEMO_APP.app_key,
                            "app_secret": DEMO_APP.app_secret,
                            "monthly_call_budget": 1_000_000,
                        }
                    }
                ),
            }
        },
    )
    async with Stack(config) as stack:
        targets = {name: f"127.0.0.1:{stack.ops_ports[name]}" for name in SERVICES}
        async with Prometheus(tmp_path / "prometheus", targets) as prom:

            async def all_up() -> bool:
                active = (await prom.api("targets"))["activeTargets"]
                return len(active) == 3 and all(t["health"] == "up" for t in active)

            await poll_until(all_up, timeout=60, what="prometheus to scrape all three services")
            await inject_poison(stack)

            async def bills_loaded() -> bool:
                return bool(await prom.series("sum(dingdee_records_out_total{stage='loader'}) > 0"))

            await poll_until(bills_loaded, timeout=240, what="the loader to finish some bills")
            # one certain Kingdee 5xx (the 5 % rate may miss a short demo): the replayed bill's
            # existence check meets it, so the error panels have data whatever the dice said
            async with httpx.AsyncClient() as client:
                queued = await client.post(
                    f"{stack.kingdee_url}/_sandbox/faults", json={"queue": ["http_503"]}
                )
                queued.raise_for_status()
            await replay_one_bill(stack)
            empty: list[str] = []

            async def panels_have_data() -> bool:
                empty.clear()
                for where, expr in dashboard_queries():
                    if not await prom.series(expr):
                        empty.append(f"{where}: {expr}")
                return not empty

            for _ in range(45):  # bounded: 45 rounds of 2 s while rates fill in
                if await panels_have_data():
                    break
                await asyncio.sleep(2)
            assert not empty, "panels without data:\n" + "\n".join(empty)

            for alert, full, signal in alert_expressions():
                await prom.series(full)  # valid PromQL (the API fails on a syntax error)
                assert await prom.series(signal), f"{alert}: `{signal}` returns no series"
            rules = (await prom.api("rules"))["groups"]
            loaded = {r["name"]: r["health"] for g in rules for r in g["rules"]}
            assert {a for a, _, _ in alert_expressions()} <= set(loaded)
            assert set(loaded.values()) == {"ok"}, loaded
