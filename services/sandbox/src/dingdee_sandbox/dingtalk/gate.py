"""Admission of a data call, host-neutral: token, permission, QPS limits, quota, faults.

Each host renders a ``Refusal`` in its own shape (old: HTTP 200 + ``errcode``; v1.0: 4xx/5xx
+ ``code``). The order follows DingTalk's: authentication first, then limits, then the call.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from dingdee_sandbox.dingtalk.state import CST, State

__all__ = ["Refusal", "RefusalKind", "admit"]

RefusalKind = Literal[
    "token_missing",
    "token_invalid",
    "token_expired",
    "forbidden",
    "qps",
    "global_qps",
    "quota",
    "busy",
    "http",
    "malformed",
    "reset",
]


@dataclass(frozen=True)
class Refusal:
    """Why a call is not answered normally; ``status`` for ``http``, ``until_ms`` for 90002."""

    kind: RefusalKind
    status: int = 0
    until_ms: int = 0


def _month(now_ms: int) -> str:
    return datetime.fromtimestamp(now_ms / 1000, CST).strftime("%Y-%m")


def _limits(state: State, app_key: str, api: str, metered: bool) -> Refusal | None:
    f, now = state.faults, state.now_ms()
    if app_key in f.forbidden_apps:
        return Refusal("forbidden")
    if state.limiter.over_app_qps(app_key, api, f.qps, count_rejected=f.count_rejected):
        return Refusal("qps")
    penalty_ms = int(f.global_penalty_seconds * 1000)
    if state.limiter.over_global_qps(api, f.global_qps, now, penalty_ms):
        return Refusal("global_qps", until_ms=state.limiter.penalty_until_ms[api])
    if metered and not state.limiter.meter(_month(now), f.monthly_quota):
        return Refusal("quota")
    return None


def _injected(state: State) -> Refusal | None:
    f, roll = state.faults, state.fault_rng.random()
    now = state.now_ms()
    edges: list[tuple[float, Refusal]] = [
        (f.http_500_rate, Refusal("http", status=500)),
        (f.gateway_rate, Refusal("http", status=state.fault_rng.choice((502, 503, 504)))),
        (f.busy_rate, Refusal("busy")),
        (
            f.global_qps_rate,
            Refusal("global_qps", until_ms=now + int(f.global_penalty_seconds * 1000)),
        ),
        (f.malformed_rate, Refusal("malformed")),
    ]
    for rate, refusal in edges:
        if roll < rate:
            return refusal
        roll -= rate
    if state.fault_rng.random() < f.reset_rate:
        return Refusal("reset")
    return None


async def admit(
    state: State, token: str | None, host: str, api: str, *, metered: bool = True
) -> tuple[str | None, Refusal | None]:
    """Decide whether a data call on ``host`` for ``api`` is served.

    Called by every data endpoint before it reads its parameters. Returns the caller's app key
    (None when the token is not valid) and a refusal or None. A slow fault sleeps here and then
    admits the call. ``metered=False``: not counted against the monthly quota (the contact
    APIs, dingtalk.md lines 793–795). Never raises.
    """
    verdict, app_key = state.token_store.check(
        token, host, state.now_ms(), cross_host=state.faults.cross_host_tokens
    )
    if verdict != "ok" or app_key is None:
        kind: RefusalKind = "token_missing" if verdict == "missing" else f"token_{verdict}"  # type: ignore[assignment]
        return None, Refusal(kind)
    refusal = _limits(state, app_key, api, metered) or _injected(state)
    if refusal is None and state.fault_rng.random() < state.faults.slow_rate:
        await asyncio.sleep(state.faults.slow_seconds)
    return app_key, refusal
