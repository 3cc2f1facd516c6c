"""Response shapes of both hosts (contract §0, §1.4, §5.2, §7.2) and the connection reset.

Old host: always HTTP 200, ``errcode``/``errmsg`` and a ``request_id`` of 12–13 lowercase
alphanumerics; ``errcode 88`` wraps a string ``sub_code``. v1.0: payload bodies on success (the
request id in the ``x-acs-request-id`` header), ``{"code", "message", "requestid"}`` with a
4xx/5xx status on failure.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import string
import struct
import uuid
from typing import Any, NoReturn

import orjson
from aiohttp import web

__all__ = [
    "MALFORMED",
    "old_err88",
    "old_flat",
    "old_json",
    "old_ok",
    "old_rid",
    "reset_connection",
    "v1_error",
    "v1_json",
    "v1_rid",
]

MALFORMED = b'{"errcode":0,"errmsg":"ok","result":{"list":["'
_ALPHABET = string.ascii_lowercase + string.digits


def old_rid() -> str:
    """An old-host ``request_id``: 12 or 13 lowercase alphanumerics."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(12 + secrets.randbelow(2)))


def v1_rid() -> str:
    """A v1.0 ``requestid``: an upper-case UUID."""
    return str(uuid.uuid4()).upper()


def _dumps(
    payload: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(payload),
        status=status,
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


def old_json(payload: dict[str, Any]) -> web.Response:
    """HTTP 200 with ``payload`` plus a fresh ``request_id``."""
    return _dumps({**payload, "request_id": old_rid()})


def old_ok(body: dict[str, Any]) -> web.Response:
    """A successful old-host answer: ``errcode 0``, ``errmsg ok``, the body, ``request_id``."""
    return old_json({"errcode": 0, "errmsg": "ok", **body})


def old_err88(sub_code: str, sub_msg: str, errmsg: str | None = None) -> web.Response:
    """``errcode 88`` with a string ``sub_code`` (auth, throttling, permission, unknown id)."""
    text = errmsg or f"ding talk error[subcode={sub_code},submsg={sub_msg}]"
    return old_json({"errcode": 88, "sub_code": sub_code, "sub_msg": sub_msg, "errmsg": text})


def old_flat(errcode: int, errmsg: str) -> web.Response:
    """A flat old-host error: ``{"errcode": N, "errmsg": ...}`` (token errors, -1, 90020)."""
    return old_json({"errcode": errcode, "errmsg": errmsg})


def v1_json(payload: dict[str, Any]) -> web.Response:
    """A successful v1.0 answer (request id in the ``x-acs-request-id`` header)."""
    return _dumps(payload, headers={"x-acs-request-id": v1_rid()})


def v1_error(status: int, code: str, message: str) -> web.Response:
    """A v1.0 error: non-2xx with ``{"requestid", "code", "message"}``."""
    return _dumps({"requestid": v1_rid(), "code": code, "message": message}, status=status)


def reset_connection(request: web.Request) -> NoReturn:
    """Reset the client's connection (RST, no answer) and end the handler.

    Raises:
        asyncio.CancelledError: always, so aiohttp writes nothing more.
    """
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    raise asyncio.CancelledError
