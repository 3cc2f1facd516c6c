"""Kingdee WebAPI signatures exactly as the official SDK computes them (kingdee.md §1.1, §1.4).

One implementation for both sides: the loader signs with it, the Kingdee sandbox verifies with it,
and a contract test checks both against the official SDK.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import urllib.parse

__all__ = ["client_secret", "hs", "login_sign", "signature_headers"]

_XOR = b"0054f397c6234378b09ca7d3e5debce7"


def hs(key: str, message: str) -> str:
    """Base64 of the lower-case hex HMAC-SHA256 of ``message`` under ``key``."""
    digest = hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()
    return base64.b64encode(digest.encode()).decode()


def client_secret(app_id: str) -> str:
    """Decode the client secret embedded in ``app_id`` (``DecodeAppSecret``); "" when malformed."""
    parts = app_id.split("_")
    if len(parts) != 2 or len(parts[1]) != 32:
        return ""
    try:
        raw = base64.b64decode(parts[1])
    except (binascii.Error, ValueError):
        return ""
    return base64.b64encode(bytes(b ^ _XOR[i] for i, b in enumerate(raw))).decode()


def login_sign(acct_id: str, username: str, app_id: str, app_secret: str, timestamp: str) -> str:
    """The ``LoginBySign`` signature: SHA-256 hex of the five values sorted ordinally (§1.4)."""
    joined = "".join(sorted([acct_id, username, app_id, app_secret, timestamp]))
    return hashlib.sha256(joined.encode()).hexdigest()


def signature_headers(
    path: str,
    *,
    acct_id: str,
    username: str,
    app_id: str,
    app_secret: str,
    lcid: int,
    org_num: str,
    timestamp: str,
) -> dict[str, str]:
    """The ``X-Api-*`` / ``X-Kd-*`` headers for one POST to ``path`` (URL path, no host).

    Called for every request in signature mode; ``timestamp`` is Unix seconds as a string and is
    also used as the nonce, as the Python SDK does.
    """
    encoded = urllib.parse.quote(path, safe="")
    to_sign = f"POST\n{encoded}\n\nx-api-nonce:{timestamp}\nx-api-timestamp:{timestamp}\n"
    app_data = f"{acct_id},{username},{lcid},{org_num}"
    return {
        "X-Api-ClientID": app_id.split("_", maxsplit=1)[0],
        "X-Api-Auth-Version": "2.0",
        "x-api-timestamp": timestamp,
        "x-api-nonce": timestamp,
        "x-api-signheaders": "x-api-timestamp,x-api-nonce",
        "X-Api-Signature": hs(client_secret(app_id), to_sign),
        "X-Kd-Appkey": app_id,
        "X-Kd-Appdata": base64.b64encode(app_data.encode()).decode(),
        "X-Kd-Signature": hs(app_secret, app_id + app_data),
    }
