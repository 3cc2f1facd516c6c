"""An in-process DingTalk sandbox on 127.0.0.1 with an aiohttp client, for contract tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from dingdee_common.web import start_site
from dingdee_sandbox.demo_org import DEMO_APP
from dingdee_sandbox.dingtalk.app import create_app
from dingdee_sandbox.dingtalk.state import State

__all__ = ["Sandbox", "running"]


@dataclass
class Sandbox:
    """A running sandbox: its state (for set-up) and a client session bound to its URL."""

    state: State
    url: str
    http: aiohttp.ClientSession

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """One request; returns (HTTP status, decoded JSON body or the raw text)."""
        async with self.http.request(method, self.url + path, **kwargs) as response:
            text = await response.text()
            try:
                return response.status, await response.json(content_type=None)
            except ValueError:
                return response.status, text

    async def token(self) -> str:
        """A fresh old-host token of the demo app."""
        params = {"appkey": DEMO_APP.app_key, "appsecret": DEMO_APP.app_secret}
        _, body = await self.call("GET", "/gettoken", params=params)
        return str(body["access_token"])

    async def old(self, api: str, payload: dict[str, Any], token: str | None = None) -> Any:
        """``POST /topapi/processinstance/{api}`` with a (fresh) token; the JSON body."""
        token = token or await self.token()
        status, body = await self.call(
            "POST",
            f"/topapi/processinstance/{api}",
            params={"access_token": token},
            json=payload,
        )
        assert status == 200, body  # the old host answers HTTP 200 even for errors
        return body

    async def control(self, method: str, path: str, **kwargs: Any) -> Any:
        """A ``/_sandbox/`` call that must succeed; its JSON body."""
        status, body = await self.call(method, "/_sandbox/" + path, **kwargs)
        assert status == 200, body
        return body


@asynccontextmanager
async def running(state: State) -> AsyncIterator[Sandbox]:
    """Serve ``state`` on an ephemeral port for the duration of the block."""
    runner, port = await start_site(create_app(state))
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        try:
            yield Sandbox(state, f"http://127.0.0.1:{port}", http)
        finally:
            await runner.cleanup()
