"""Kingdee WebAPI signatures as the official SDK computes them (contract kingdee.md §1.1, §1.4).

The sandbox recomputes the signature headers of every signed request and compares them in constant
time; nothing here trusts a value the client sent without recomputing it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from dingdee_common.kingdee_signing import client_secret, hs

__all__ = [
    "AppData",
    "SignatureError",
    "verify_signature",
]


class SignatureError(Exception):
    """The signature headers are missing, malformed or do not match the configured secrets."""


@dataclass(frozen=True, slots=True)
class AppData:
    """The decoded ``X-Kd-Appdata`` header: who the signed request acts as."""

    acct_id: str
    username: str
    lcid: int
    org_num: str


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if not value:
        raise SignatureError(f"missing header {name}")
    return value


def _decode_app_data(value: str) -> AppData:
    try:
        text = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, ValueError) as exc:
        raise SignatureError("X-Kd-Appdata is not base64") from exc
    parts = text.split(",")
    if len(parts) != 4 or not parts[2].lstrip("-").isdigit():
        raise SignatureError("X-Kd-Appdata is not 'acct,user,lcid,org'")
    return AppData(parts[0], parts[1], int(parts[2]), parts[3])


def verify_signature(
    headers: Mapping[str, str], raw_path: str, secrets: Mapping[str, str]
) -> AppData:
    """Check algorithms A and B of §1.1 for one request and return who it acts as.

    Called by the sandbox for every request that carries ``X-Kd-Appkey``. ``secrets`` maps each
    accepted app id to its app secret; ``raw_path`` is the request path as sent.

    Raises:
        SignatureError: a header is missing or malformed, the app id is unknown, or a signature
            does not match.
    """
    app_id = _header(headers, "X-Kd-Appkey")
    app_secret = secrets.get(app_id)
    if app_secret is None:
        raise SignatureError(f"unknown app id {app_id.split('_')[0]}")
    if headers.get("X-Api-ClientID", "") != app_id.split("_")[0]:
        raise SignatureError("X-Api-ClientID does not match X-Kd-Appkey")
    nonce = _header(headers, "x-api-nonce")
    timestamp = _header(headers, "x-api-timestamp")
    encoded_path = urllib.parse.quote(raw_path, safe="")
    to_sign = f"POST\n{encoded_path}\n\nx-api-nonce:{nonce}\nx-api-timestamp:{timestamp}\n"
    expected_a = hs(client_secret(app_id), to_sign)
    if not hmac.compare_digest(expected_a, _header(headers, "X-Api-Signature")):
        raise SignatureError("X-Api-Signature does not match the request")
    app_data_b64 = _header(headers, "X-Kd-Appdata")
    app_data = _decode_app_data(app_data_b64)
    plain = base64.b64decode(app_data_b64).decode()
    expected_b = hs(app_secret, app_id + plain)
    if not hmac.compare_digest(expected_b, _header(headers, "X-Kd-Signature")):
        raise SignatureError("X-Kd-Signature does not match the app secret")
    return app_data
