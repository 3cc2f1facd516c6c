"""The three request body envelopes of contract §0.2, normalised to named parameters.

Named (``{"formid": .., "data": ..}``), positional (``{"parameters": [..]}``) and the legacy client
envelope (``{"parameters": "[..]"}``) all become one dict with lower-case parameter names; ``data``
given as a JSON string is decoded.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["EnvelopeError", "as_bool", "as_int", "ci_get", "parse_envelope"]

# Positional parameter order of each stub method (lower-case method name → parameter names).
POSITIONAL: dict[str, tuple[str, ...]] = {
    "validateuser": ("acctid", "username", "password", "lcid"),
    "loginbyappsecret": ("acctid", "username", "appid", "appsecret", "lcid"),
    "loginbysign": ("acctid", "username", "appid", "timestamp", "sign", "lcid"),
    "executebillquery": ("data",),
    "querybusinessinfo": ("data",),
    "billquery": ("data",),
    "queryasyncresult": ("queryinfo",),
    "logout": (),
    "getdatacenterlist": (),
}
_FORM_DATA = ("formid", "data")


class EnvelopeError(ValueError):
    """The body is not JSON or not one of the three envelopes."""


def ci_get(mapping: dict[str, Any], key: str, default: Any = None) -> Any:
    """``mapping[key]`` matched case-insensitively (Kingdee binds parameters that way)."""
    if key in mapping:
        return mapping[key]
    lower = key.lower()
    for name, value in mapping.items():
        if name.lower() == lower:
            return value
    return default


def as_bool(value: Any, default: bool) -> bool:
    """A Kingdee boolean: JSON bool, or the strings "true"/"false" in any case."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    return str(value).strip().lower() in ("true", "1", "yes")


def as_int(value: Any, default: int) -> int:
    """A Kingdee integer: JSON number or numeric string."""
    if value is None or value == "":
        return default
    try:
        return int(str(value).strip())
    except ValueError:
        return default


def _decode_json_string(value: Any) -> Any:
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise EnvelopeError(f"parameter is not valid JSON: {exc}") from exc
    return value


def parse_envelope(method: str, body: bytes) -> dict[str, Any]:
    """Normalise a request body for stub ``method`` (lower-case) to named parameters.

    Raises:
        EnvelopeError: the body is not a JSON object or its ``parameters`` cannot be decoded.
    """
    if not body.strip():
        return {}
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError(f"request body is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise EnvelopeError("request body must be a JSON object")
    params: dict[str, Any] = {k.lower(): v for k, v in raw.items()}
    positional = params.pop("parameters", None)
    if positional is not None:
        positional = _decode_json_string(positional)
        if not isinstance(positional, list):
            raise EnvelopeError("'parameters' must be an array or a JSON string of one")
        names = POSITIONAL.get(method, _FORM_DATA)
        params.update(dict(zip(names, positional, strict=False)))
    if "data" in params:
        params["data"] = _decode_json_string(params["data"])
    return params
