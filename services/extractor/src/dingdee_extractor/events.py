"""DingTalk Stream-mode listener: approval events trigger the fetch, polling is the safety net.

Per DingTalk app one WebSocket (``POST /v1.0/gateway/connections/open`` → ``{endpoint, ticket}``).
A ``bpms_instance_change`` finish/terminate event of a configured ``process_code`` becomes one
``get`` through the same token bucket and the same fetch-and-emit path as polling; the event is
acked only after the snapshot it caused was acked by Kafka. A repeated event for an instance
already emitted as terminal is acked without a ``get``; any other duplicate costs a ``get`` and
emits nothing (fingerprints). On failure the event is answered LATER so DingTalk redelivers it.
Events of a flow that arrive while it handles others are handled together, as one batch with one
checkpoint (``batching``).

``connections/open`` answering 4xx (wrong secret, Stream mode not enabled for the app) is a
configuration error, not an outage: its body is logged naming the app, ``/readyz`` shows it, and
the listener asks again only every ``reconnect_max_seconds`` while polling goes on as the
safety net.

Why not the official ``dingtalk-stream`` client: it opens the connection with blocking
``requests`` inside the event loop and reconnects after a fixed 10 s, where we need a non-blocking
loop, exponential backoff with jitter and acks tied to Kafka acks; the wire protocol is small, so
this module speaks it directly (the sandbox is also checked against the official client).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
from aiokafka.errors import KafkaError

from dingdee_common.errors import DingdeeError
from dingdee_common.observability.logging import get_logger
from dingdee_common.retry import backoff_delay
from dingdee_common.settings import RetrySettings
from dingdee_extractor.batching import Batcher
from dingdee_extractor.gapnet import Coverage
from dingdee_extractor.metrics import ExtractorMetrics
from dingdee_extractor.outage import OutageWatch
from dingdee_extractor.poller import EventItem, FlowPoller
from dingdee_extractor.settings import DingTalkApp, EventsSettings

__all__ = ["EventListener"]

log = get_logger(__name__)
_ACK_OK = 200
_ACK_LATER = 500


class StreamRefusedError(DingdeeError):
    """``connections/open`` answered 4xx: the app's credentials or Stream mode are wrong."""


class EventListener:
    """One app's event stream; ``run`` reconnects with backoff until ``stop`` is set."""

    def __init__(
        self,
        app: str,
        creds: DingTalkApp,
        settings: EventsSettings,
        pollers: dict[str, FlowPoller],
        metrics: ExtractorMetrics,
        outage: OutageWatch | None = None,
        coverage: Coverage | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self._app = app
        self._outage = outage
        self._creds = creds
        self._settings = settings
        self._pollers = pollers  # by process_code
        # one group commit per flow: events arriving while it is busy form its next batch
        self._batches = {code: Batcher(p.on_events) for code, p in pollers.items()}
        self._metrics = metrics
        # connected, acknowledged intervals on the pollers' clock (the gap-aware safety net)
        self.coverage = coverage if coverage is not None else Coverage()
        self._clock = clock or (lambda: int(time.time() * 1000))
        self.handled = 0
        self._tasks: set[asyncio.Task[None]] = set()
        # reconnect waits: 0.5 s doubling per failure, capped (full jitter, dingdee_common.retry)
        cap = settings.reconnect_max_seconds
        self._backoff = RetrySettings(
            initial_backoff_seconds=min(0.5, cap), max_backoff_seconds=cap
        )
        # contact events (dingtalk.md §9.2) for the reference sources (issue #14, contacts.py)
        self.contact_hook: Callable[[str, str, dict[str, Any]], None] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, read, reconnect after each session's end, until ``stop`` is set.

        A supervisor rather than a retry: a session that ends (DingTalk's ``disconnect``, a
        closed socket) is followed by the next one, and the failure count starts again after a
        session that opened. The waits are ``dingdee_common.retry``'s backoff, capped at
        ``reconnect_max_seconds``; a refusal waits that cap in full.
        """
        failures = 0
        # silence is counted from the listener's start until the first event
        self._metrics.events_connected.labels(self._app).set(0)
        self._metrics.events_last_received.labels(self._app).set(time.time())
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                try:
                    await self._session(session, stop)
                    failures = 0
                    delay = backoff_delay(1, self._backoff)
                except StreamRefusedError as exc:
                    self._report(exc.message)
                    log.error("extractor.events.refused", app=self._app, error=exc.message)
                    delay = self._settings.reconnect_max_seconds  # asking soon cannot help
                except (aiohttp.ClientError, OSError, TimeoutError, DingdeeError) as exc:
                    failures += 1
                    log.warning("extractor.events.disconnected", app=self._app, error=str(exc))
                    delay = backoff_delay(failures + 1, self._backoff)
                self._metrics.events_connected.labels(self._app).set(0)
                if stop.is_set():
                    break
                await asyncio.sleep(delay)

    async def _session(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        body = {
            "clientId": self._creds.app_key,
            "clientSecret": self._creds.app_secret.get_secret_value(),
            "subscriptions": [{"type": "EVENT", "topic": "*"}],
            "ua": "dingdee-extractor",
        }
        url = self._settings.base_url.rstrip("/") + "/v1.0/gateway/connections/open"
        async with session.post(url, json=body) as response:
            if 400 <= response.status < 500:
                raise StreamRefusedError(
                    f"DingTalk Stream connections/open for app {self._app!r} answered HTTP "
                    f"{response.status} {(await response.text())[:300]}: check the app's "
                    "app_key/app_secret and enable Stream mode (推送方式: Stream 模式) for it in "
                    "the developer console, or set DINGDEE_EVENTS__ENABLED=false; polling goes "
                    "on meanwhile",
                    code="stream_refused",
                )
            if response.status != 200:
                raise DingdeeError(f"open connection: HTTP {response.status}", code="stream_open")
            info = await response.json()
        self._report(None)
        async with session.ws_connect(
            info["endpoint"], params={"ticket": info["ticket"]}, heartbeat=30
        ) as ws:
            self._metrics.events_connected.labels(self._app).set(1)
            self.coverage.connected_at(self._clock())
            log.info("extractor.events.connected", app=self._app)
            closer = asyncio.create_task(self._close_on_stop(stop, ws))
            try:
                await self._read(ws, stop)
            finally:
                closer.cancel()
                self.coverage.disconnected_at(self._clock())

    def _report(self, error: str | None) -> None:
        if self._outage is not None:
            self._outage.report(f"DingTalk Stream of app {self._app!r}", error)

    @staticmethod
    async def _close_on_stop(stop: asyncio.Event, ws: aiohttp.ClientWebSocketResponse) -> None:
        await stop.wait()
        await ws.close()

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, stop: asyncio.Event) -> None:
        """Dispatch frames until the server disconnects or ``stop`` closes the socket."""
        async for msg in ws:
            if stop.is_set():
                break
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            frame = orjson.loads(msg.data)
            if frame.get("type") == "SYSTEM":
                if (frame.get("headers") or {}).get("topic") == "disconnect":
                    return
                continue
            task = asyncio.create_task(self._handle(ws, frame))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _handle(self, ws: aiohttp.ClientWebSocketResponse, frame: dict[str, Any]) -> None:
        headers = frame.get("headers") or {}
        self._metrics.events_last_received.labels(self._app).set(time.time())
        code, outcome, kind = _ACK_OK, "ignored", "other"
        token = self.coverage.begin(self._clock())
        try:
            data = orjson.loads(frame.get("data") or "{}")
            kind = str(data.get("type", "other"))
            event_type = str(headers.get("eventType") or "")
            if self.contact_hook is not None and event_type.startswith(("user_", "org_dept_")):
                self.contact_hook(self._app, event_type, data)
                outcome, kind = "contact", event_type
            batch = self._batches.get(str(data.get("processCode")))
            relevant = event_type == "bpms_instance_change"
            if relevant and batch is not None and kind in ("finish", "terminate"):
                item: EventItem = ("finish", str(data["processInstanceId"]), 0)
                outcome = "fetched" if await batch.submit(item) else "duplicate"
                self.handled += 1
            elif relevant and batch is not None and kind == "start":
                created = int(data.get("createTime") or self._clock())
                item = ("start", str(data["processInstanceId"]), created)
                outcome = "known" if await batch.submit(item) else "duplicate"
        except (DingdeeError, KafkaError, KeyError, ValueError, OSError) as exc:
            # DingTalk or the broker is down (or the event is odd): DingTalk redelivers it later,
            # and the gap-aware safety net lists the creation times around it (gapnet)
            code, outcome = _ACK_LATER, "later"
            self.coverage.failed_at(self._clock())
            log.warning("extractor.events.failed", app=self._app, error=str(exc))
        finally:
            self.coverage.end(token)
        self._metrics.events.labels(self._app, kind, outcome).inc()
        ack = {
            "code": code,
            "headers": {"contentType": "application/json", "messageId": headers.get("messageId")},
            "message": "OK" if code == _ACK_OK else "LATER",
            "data": orjson.dumps({"status": "SUCCESS" if code == _ACK_OK else "LATER"}).decode(),
        }
        if not ws.closed:
            await ws.send_str(orjson.dumps(ack).decode())
