"""The console's security on a real broker: every route refuses a request without a user, a POST
without the CSRF token is refused, a viewer cannot replay, a proxy-mode request without the
proxy's secret is refused, hostile record content is escaped, and no configured secret appears in
any page."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from dingdee_common.kafka.topics import Topics
from dingdee_common.settings import KafkaSettings
from dingdee_ops.console.app import build_app
from dingdee_ops.console.security import SECURITY_HEADERS
from dingdee_ops.console.settings import ConsoleSettings
from dingdee_ops.console.state import ConsoleState
from tests.helpers import demo_flows_file
from tests.integration.test_dlq_replay import Seed, audits, read_topic, seed

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "op-token-4XkQ9w"
VIEWER = "viewer-token-7PzR2m"
SESSION = "session-secret-Hq3Vb8"
PROXY = "proxy-secret-Lm5Tc1"
SECRETS = (TOKEN, VIEWER, SESSION, PROXY, "fb7d46647ac346dbb5fcd45b65512a45")
HOSTILE = "<script>alert(1)</script>"
Client = TestClient[Any, Any]
ClientFactory = Callable[..., Any]


def _env(monkeypatch: pytest.MonkeyPatch, kafka: KafkaSettings, **console: str) -> None:
    monkeypatch.setenv("DINGDEE_KAFKA__BOOTSTRAP_SERVERS", kafka.bootstrap_servers)
    monkeypatch.setenv("DINGDEE_KAFKA__TOPIC_PREFIX", kafka.topic_prefix)
    monkeypatch.setenv("DINGDEE_FLOWS_FILE", str(demo_flows_file()))
    monkeypatch.setenv("DINGDEE_CONSOLE__SESSION_SECRET", SESSION)
    monkeypatch.setenv("DINGDEE_KINGDEE__APP_SECRET", SECRETS[-1])  # a service secret around
    for key, value in console.items():
        monkeypatch.setenv(f"DINGDEE_CONSOLE__{key.upper()}", value)


@pytest.fixture
async def seeded(kafka: KafkaSettings, topics: Topics) -> KafkaSettings:
    await seed(kafka, topics, [Seed("loader", topics.bills_ready, "BX-1", message=HOSTILE)])
    return kafka


@pytest.fixture
async def console(seeded: KafkaSettings, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Client]:
    _env(monkeypatch, seeded, token=TOKEN, viewer_token=VIEWER)
    state = ConsoleState(ConsoleSettings(), CollectorRegistry())
    await state.refresh()
    assert state.journal is not None and len(state.journal.letters) == 1
    async with TestClient(TestServer(build_app(state))) as client:
        yield client


def routes(client: Client) -> list[tuple[str, str]]:
    """Every route of the console but sign-in and static files, as (method, concrete path)."""
    out = []
    for route in client.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix", "")
        if path.startswith(("/static", "/signin")) or route.method == "HEAD":
            continue
        out.append((route.method, re.sub(r"\{[^}]+\}", "0", path)))
    return out


async def signed_in(client: Client, token: str) -> str:
    """Sign in with ``token`` (the cookie stays in the client); the page's CSRF token."""
    page = await client.get(f"/try?token={token}")
    assert page.status == 200
    found = re.search(r'name="csrf" value="([^"]+)"', await page.text())
    assert found is not None
    return found.group(1)


async def test_every_route_refuses_a_request_without_a_user(console: Client) -> None:
    checked = routes(console)
    assert {("GET", "/flows"), ("POST", "/dlq/replay"), ("GET", "/dlq/0/0/0")} <= set(checked)
    for method, path in checked:
        response = await console.request(method, path, allow_redirects=False)
        assert response.status in (401, 302), (method, path, response.status)
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (path, name)
    wrong = await console.get("/flows?token=not-the-token", allow_redirects=True)
    assert wrong.status == 401


async def test_csrf_roles_and_no_secret_in_any_page(console: Client, topics: Topics) -> None:
    csrf = await signed_in(console, TOKEN)
    cookie = next(c for c in console.session.cookie_jar if c.key == "dingdee_console")
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    pick = {"pick": "loader:0:0"}
    assert (await console.post("/dlq/replay", data=pick)).status == 403
    assert (await console.post("/dlq/replay", data={**pick, "csrf": "x" + csrf})).status == 403
    assert (await console.post("/try", data={"flow": "petty-cash", "instance": "{}"})).status == 403

    pages = []
    for path in (
        "/flows",
        "/approvals?q=BX-1",
        "/dlq?state=all",
        f"/dlq/{topics.dlq('loader')}/0/0",
    ):
        response = await console.get(path)
        assert response.status == 200, path
        pages.append(await response.text())
    dry = await console.post("/dlq/replay", data={**pick, "csrf": csrf})
    assert dry.status == 200
    pages.append(await dry.text())
    assert "dry_run" in pages[-1]
    for page in pages:
        assert HOSTILE not in page, "record content is escaped"
        for secret in SECRETS:
            assert secret not in page
    assert "&lt;script&gt;" in pages[3]
    assert [a.dry_run for a in await audits(_kafka(), topics)] == [True]

    for pattern, rows in (("script", 1), ("no such reason", 0)):
        listed = await (await console.get(f"/dlq?state=all&pattern={pattern}")).text()
        assert listed.count('<tr class="letter">') == rows, pattern
    bad = await (await console.get("/dlq?pattern=(")).text()
    assert "错误信息匹配模式无效" in bad

    viewer = await signed_in(console, VIEWER)
    refused = await console.post("/dlq/replay", data={**pick, "csrf": viewer, "confirm": "yes"})
    assert refused.status == 403
    assert await read_topic(_kafka(), topics.bills_ready) == [], "nothing was replayed"


def _kafka() -> KafkaSettings:
    return ConsoleSettings().kafka


async def test_proxy_mode_needs_the_proxy_secret_and_maps_groups(
    seeded: KafkaSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _env(monkeypatch, seeded, auth="proxy", proxy_secret=PROXY, operator_groups='["fin-ops"]')
    state = ConsoleState(ConsoleSettings(), CollectorRegistry())
    user = {"X-Forwarded-Email": "li.lei@example.com", "X-Forwarded-Groups": "staff,fin-ops"}
    async with TestClient(TestServer(build_app(state))) as client:
        bypass = await client.get("/flows", headers=user)
        assert bypass.status == 401, "no proxy secret: the request did not come through the proxy"
        proxied = {**user, "X-Dingdee-Proxy-Secret": PROXY}
        page = await client.get("/flows", headers=proxied)
        assert page.status == 200
        text = await page.text()
        assert "li.lei@example.com" in text and ">operator<" in text and PROXY not in text
        staff = {**proxied, "X-Forwarded-Groups": "staff"}
        assert ">viewer<" in await (await client.get("/flows", headers=staff)).text()
        nobody = {"X-Dingdee-Proxy-Secret": PROXY}
        assert (await client.get("/flows", headers=nobody)).status == 401


async def test_a_broker_outage_keeps_the_pages_up_and_says_so(
    seeded: KafkaSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _env(monkeypatch, seeded, token=TOKEN)
    state = ConsoleState(ConsoleSettings(), CollectorRegistry())
    await state.refresh()
    assert state.journal is not None and state.health.ready()[0]
    with socket.create_server(("127.0.0.1", 0)) as gone:
        port = gone.getsockname()[1]
    monkeypatch.setenv("DINGDEE_KAFKA__BOOTSTRAP_SERVERS", f"127.0.0.1:{port}")
    state.settings = ConsoleSettings()  # the same console, its broker now gone
    await asyncio.wait_for(state.refresh(), 60)
    assert state.journal_error and not state.health.ready()[0]
    assert state.journal is not None and len(state.journal.letters) == 1, "the last data stays"
    async with TestClient(TestServer(build_app(state))) as client:
        await signed_in(client, TOKEN)
        page = await (await client.get("/dlq?state=all")).text()
    assert "Kafka:" in page and page.count('<tr class="letter">') == 1
