"""Typed keys of the sandbox's aiohttp application and requests."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dingdee_sandbox.dingtalk.state import State

__all__ = ["API", "APP", "BODY", "STATE"]

STATE: web.AppKey[State] = web.AppKey("state", State)
BODY: web.RequestKey[dict[str, Any]] = web.RequestKey("body", dict)
API: web.RequestKey[str] = web.RequestKey("api", str)
APP: web.RequestKey[str] = web.RequestKey("app", str)
