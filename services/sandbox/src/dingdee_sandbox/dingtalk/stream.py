"""Stream mode (contract §5.5): ``POST /v1.0/gateway/connections/open`` and the event WebSocket.

Instances that start, finish or terminate on the sandbox become ``bpms_instance_change`` EVENT
frames pushed to every connected client; a frame stays pending until the client acks it with
code 200 and is redelivered after ``redeliver_seconds`` otherwise (or at once on a LATER ack).
Knobs drop or duplicate a share of events and drop connections with a SYSTEM ``disconnect``;
``open_status`` (with ``open_code``/``open_message``) makes ``connections/open`` refuse every app
the way a wrong secret does (dingtalk.md lines 103–105), e.g. for an app whose Stream mode is not
enabled (lines 572–580, §5.5, document no body for that: the default code is a placeholder).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from dingdee_sandbox.demo_org import DEMO_APP
from dingdee_sandbox.dingtalk.state import State

__all__ = ["StreamGateway", "StreamKnobs", "event_frame"]


@dataclass
class StreamKnobs:
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    redeliver_seconds: float = 5.0
    seed: int = 0
    open_status: int = 0  # 0: connections/open answers normally; else this 4xx for every app
    open_code: str = "streamNotEnabled"
    open_message: str = "应用未开启Stream模式"


def event_frame(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """A §9.2 EVENT frame: string epoch-ms times, ``data`` as JSON text (dingtalk.md §9.2)."""
    now = str(int(time.time() * 1000))
    return {
        "specVersion": "1.0",
        "type": "EVENT",
        "headers": {
            "appId": DEMO_APP.app_key,
            "connectionId": "sandbox",
            "contentType": "application/json",
            "messageId": uuid.uuid4().hex,
            "time": now,
            "topic": "*",
            "eventType": event_type,
            "eventId": uuid.uuid4().hex,
            "eventBornTime": now,
            "eventCorpId": DEMO_APP.corp_id,
            "eventUnifiedAppId": DEMO_APP.app_key,
        },
        "data": orjson.dumps(data).decode(),
    }


@dataclass
class StreamGateway:
    """Owns the connections, the pending (unacked) frames and the redelivery loop."""

    state: State
    knobs: StreamKnobs = field(default_factory=StreamKnobs)
    sockets: set[web.WebSocketResponse] = field(default_factory=set)
    pending: dict[str, tuple[dict[str, Any], float]] = field(default_factory=dict)
    tickets: set[str] = field(default_factory=set)
    sent: int = 0
    acked: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.knobs.seed)
        self.state.listeners.append(self.on_change)
        self.state.contacts.listeners.append(lambda kind, data: self.emit(event_frame(kind, data)))

    def on_change(self, instance_id: str, process_code: str, change: str) -> None:
        """Instance listener: queue an event frame (some dropped or doubled by the knobs)."""
        self.emit(self._frame(instance_id, process_code, change))

    def emit(self, frame: dict[str, Any]) -> None:
        """Queue one EVENT frame for delivery (some dropped or doubled by the knobs)."""
        if self.rng.random() < self.knobs.drop_rate:
            return
        copies = 2 if self.rng.random() < self.knobs.duplicate_rate else 1
        for n in range(copies):
            message_id = frame["headers"]["messageId"] + (f"-{n}" if n else "")
            copy = {**frame, "headers": {**frame["headers"], "messageId": message_id}}
            self.pending[message_id] = (copy, 0.0)
        with contextlib.suppress(RuntimeError):  # no loop: delivered by the redelivery task
            asyncio.get_running_loop().create_task(self.flush())

    def _frame(self, instance_id: str, process_code: str, change: str) -> dict[str, Any]:
        inst = self.state.instances[instance_id]
        data: dict[str, Any] = {
            "processInstanceId": instance_id,
            "processCode": process_code,
            "bizCategoryId": "",
            "type": change,
            "createTime": inst.create_ms,
            "businessId": inst.business_id,
            "title": inst.title,
            "staffId": inst.originator,
            "url": f"https://aflow.dingtalk.com?procInsId={instance_id}",
            "corpId": DEMO_APP.corp_id,
        }
        if change != "start" and inst.finish_ms is not None:
            data["finishTime"] = inst.finish_ms
        if change == "finish":
            data["result"] = inst.result
        return event_frame("bpms_instance_change", data)

    async def flush(self) -> None:
        """Send every pending frame that is due (never sent, or unacked past the timeout)."""
        if not self.sockets:
            return
        now = time.monotonic()
        for message_id, (frame, sent_at) in list(self.pending.items()):
            if sent_at and now - sent_at < self.knobs.redeliver_seconds:
                continue
            self.pending[message_id] = (frame, now)
            for ws in list(self.sockets):
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.send_str(orjson.dumps(frame).decode())
                    self.sent += 1

    async def redeliver_forever(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.knobs.redeliver_seconds / 2))
            await self.flush()

    async def disconnect_all(self) -> int:
        """Push a SYSTEM ``disconnect`` and close every connection (clients must reconnect)."""
        closed = 0
        for ws in list(self.sockets):
            frame = {
                "specVersion": "1.0",
                "type": "SYSTEM",
                "headers": {"topic": "disconnect", "messageId": uuid.uuid4().hex},
                "data": "{}",
            }
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(orjson.dumps(frame).decode())
            await ws.close()
            closed += 1
        return closed

    # ---- HTTP ------------------------------------------------------------------------------

    async def open_connection(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.knobs.open_status:
            return web.json_response(
                {
                    "code": self.knobs.open_code,
                    "message": self.knobs.open_message,
                    "requestid": secrets.token_hex(8).upper(),
                },
                status=self.knobs.open_status,
            )
        if (
            body.get("clientId") != DEMO_APP.app_key
            or body.get("clientSecret") != DEMO_APP.app_secret
        ):
            return web.json_response(
                {
                    "code": "invalidClientIdOrSecret",
                    "message": "无效的clientId或者clientSecret",
                    "requestid": secrets.token_hex(8).upper(),
                },
                status=400,
            )
        ticket = secrets.token_urlsafe(16)
        self.tickets.add(ticket)
        host = request.headers.get("Host", request.host)
        return web.json_response({"endpoint": f"ws://{host}/connect", "ticket": ticket})

    async def connect(self, request: web.Request) -> web.WebSocketResponse:
        if request.query.get("ticket") not in self.tickets:
            raise web.HTTPUnauthorized(text="invalid ticket")
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        self.sockets.add(ws)
        for message_id, (frame, _) in list(self.pending.items()):
            self.pending[message_id] = (frame, 0.0)
        await self.flush()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_ack(orjson.loads(msg.data))
        finally:
            self.sockets.discard(ws)
        return ws

    def _on_ack(self, ack: dict[str, Any]) -> None:
        message_id = (ack.get("headers") or {}).get("messageId")
        if message_id not in self.pending:
            return
        if ack.get("code") == 200:
            self.pending.pop(message_id)
            self.acked += 1
        else:  # LATER: redeliver on the next flush
            frame, _ = self.pending[message_id]
            self.pending[message_id] = (frame, 0.0)

    async def control(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            body = await request.json()
            if body.get("disconnect"):
                await self.disconnect_all()
            for key in ("drop_rate", "duplicate_rate", "redeliver_seconds"):
                if key in body:
                    setattr(self.knobs, key, float(body[key]))
            for key in ("open_status", "open_code", "open_message"):
                if key in body:
                    setattr(self.knobs, key, type(getattr(self.knobs, key))(body[key]))
        return web.json_response(
            {
                "connections": len(self.sockets),
                "pending": len(self.pending),
                "sent": self.sent,
                "acked": self.acked,
                **self.knobs.__dict__,
            }
        )

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1.0/gateway/connections/open", self.open_connection),
            web.get("/connect", self.connect),
            web.route("*", "/_sandbox/stream", self.control),
        ]
