"""The small HTTP port of every service: ``/metrics``, ``/healthz``, ``/readyz`` (DESIGN §8)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from dingdee_common.settings import HttpServerSettings
from dingdee_common.web import start_site

__all__ = ["Health", "OpsServer"]


@dataclass
class Health:
    """Liveness and readiness as the main loop reports them."""

    stale_after: float = 120.0
    connected: bool = False
    not_ready_reason: str | None = "starting"
    last_progress: float = field(default_factory=time.monotonic)

    def progress(self) -> None:
        """Call whenever the main loop completes a step (a poll, a batch, a record)."""
        self.last_progress = time.monotonic()

    def set_ready(self) -> None:
        self.connected = True
        self.not_ready_reason = None
        self.progress()

    def set_not_ready(self, reason: str) -> None:
        self.not_ready_reason = reason

    def alive(self) -> tuple[bool, str]:
        idle = time.monotonic() - self.last_progress
        if idle > self.stale_after * 5:
            return False, f"main loop made no progress for {idle:.0f}s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        if self.not_ready_reason:
            return False, self.not_ready_reason
        idle = time.monotonic() - self.last_progress
        if idle > self.stale_after:
            return False, f"no progress for {idle:.0f}s"
        return True, "ok"


class OpsServer:
    """Serves the ops endpoints on its own port; start it before the main loop."""

    def __init__(
        self, settings: HttpServerSettings, registry: CollectorRegistry, health: Health
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._health = health
        self._runner: web.AppRunner | None = None
        self.port: int = settings.port

    async def _metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _: web.Request) -> web.Response:
        ok, why = self._health.alive()
        return web.json_response(
            {"status": "ok" if ok else "fail", "reason": why}, status=200 if ok else 503
        )

    async def _readyz(self, _: web.Request) -> web.Response:
        ok, why = self._health.ready()
        return web.json_response(
            {"status": "ok" if ok else "fail", "reason": why}, status=200 if ok else 503
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner, self.port = await start_site(app, self._settings.host, self._settings.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
