"""The sandbox's knobs: limits, fault rates and the shape options contract §7 leaves open.

Every field can be changed at run time with ``POST /_sandbox/faults`` (a partial JSON object);
unknown names are refused. Rates are probabilities in ``[0, 1]`` drawn from a generator seeded
with ``seed``, so a run with the same requests sees the same faults.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["Faults"]

_RATES = ("busy_rate", "http_500_rate", "gateway_rate", "global_qps_rate", "malformed_rate")
_RATES_MORE = ("slow_rate", "reset_rate")


@dataclass
class Faults:
    """Limits, injected faults and shape options (contract §7.1–§7.6).

    Attributes:
        busy_rate: share of metered calls answered ``-1 系统繁忙`` (v1.0: 500 ``systemError``).
        http_500_rate: share answered HTTP 500 with an HTML body.
        gateway_rate: share answered HTTP 502, 503 or 504 (gateway errors).
        global_qps_rate: share answered ``88/90002`` (v1.0: 403 ``QpsLimitForApi``).
        malformed_rate: share answered HTTP 200 with a truncated, unparsable JSON body.
        slow_rate: share answered only after ``slow_seconds`` (beyond a client timeout).
        reset_rate: share whose connection is reset without an answer.
        qps: per-(app, API) limit in a sliding second → ``88/90018`` (v1.0: 403).
        count_rejected: whether calls refused by the QPS limit still fill the window.
        global_qps: optional per-API limit over all apps in a sliding second → ``90002``.
        global_penalty_seconds: how long a ``90002`` limit lasts ("限制将在 … 结束").
        monthly_quota: metered calls per calendar month (CST) before ``90020``; token calls exempt.
        listids_errcode / listids_errmsg: old-host answer to an invalid listids request.
        unknown_instance: old-host answer to an unknown id on ``get``: ``"88"`` (``88/820005``)
            or ``"flat"`` (``{"errcode": 820005}``).
        flat_auth_errors: old host answers auth failures in the legacy flat form
            (``41001``/``40014``/``42001``) instead of inside ``errcode 88``.
        cross_host_tokens: tokens from one host's token endpoint are accepted on the other.
        v1_auth_status: HTTP status of a v1.0 ``InvalidAuthentication`` (400 or 401).
        v1_next_token_int: v1.0 ``nextToken`` as a number instead of a string.
        v1_success_string: v1.0 ``success`` as the string ``"true"`` instead of a boolean.
        premium: OA premium org: the listids lookback is 5 years instead of 365 days.
        reject_future_end: listids refuses an ``end_time`` after the sandbox clock.
        forbidden_apps: app keys without the approval read permission (``88/60011``, 403).
        scope_dept_ids: if set, only instances of these originator departments are listed.
        failing_instance_ids: ``get`` of these ids always answers ``-1 系统繁忙`` (an instance
            whose detail keeps failing).
        listing_delay_seconds: an instance shows in ``listids`` only this long (sandbox clock)
            after its creation time: DingTalk's listing index lags, which the sweep is for.
        throttle_code: what the per-(app, API) limit answers: ``"90018"`` (an internal app's
            limit) or ``"90019"`` (an ISV app's per-org limit); dingtalk.md lines 518–521 (§5.1).
        flat_throttle: old-host throttling arrives flat (``{"errcode": 90018, …}``) instead of
            inside ``errcode 88`` with a ``sub_code``; dingtalk.md lines 518–521 name the codes,
            lines 527–540 (§5.2) the 88-wrapped capture; clients match the code either way.
        errcode_string: every old-host ``errcode`` is sent as a string (``"0"``, ``"90018"``),
            as ``sub_code`` already is (dingtalk.md lines 141–142).
        punished: the egress IP is banned by the anti-abuse gate (dingtalk.md line 522 and lines
            726–727: 10 000 calls in 20 s, then 5 minutes): every call, token calls included,
            answers ``{"status":1111,"wait":5,"source":"x5","punish":"deny","uuid":…}``.
        punish_status: the HTTP status of that answer (UNCONFIRMED, dingtalk.md line 727).
        listing_cap: ids one listids query pages through (dingtalk.md line 184: 10 000).
        listing_cap_error: at the cap listids keeps a ``next_cursor`` and refuses the page past it
            with ``listids_errcode`` instead of silently ending (dingtalk.md lines 704–705: the
            upstream behaviour is UNCONFIRMED).
        seed: seed of the fault generator.
    """

    busy_rate: float = 0.0
    http_500_rate: float = 0.0
    gateway_rate: float = 0.0
    global_qps_rate: float = 0.0
    malformed_rate: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 15.0
    reset_rate: float = 0.0
    qps: int = 20
    count_rejected: bool = False
    global_qps: int | None = None
    global_penalty_seconds: float = 1.0
    monthly_quota: int | None = None
    listids_errcode: int = 400002
    listids_errmsg: str = "参数错误"
    unknown_instance: str = "88"
    flat_auth_errors: bool = False
    cross_host_tokens: bool = True
    v1_auth_status: int = 400
    v1_next_token_int: bool = False
    v1_success_string: bool = False
    premium: bool = False
    reject_future_end: bool = False
    forbidden_apps: list[str] = field(default_factory=list)
    scope_dept_ids: list[str] | None = None
    listing_delay_seconds: float = 0.0
    failing_instance_ids: list[str] = field(default_factory=list)
    throttle_code: str = "90018"
    flat_throttle: bool = False
    errcode_string: bool = False
    punished: bool = False
    punish_status: int = 200
    listing_cap: int = 10_000
    listing_cap_error: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        """Validate ranges; raises ValueError naming the offending knob."""
        for name in (*_RATES, *_RATES_MORE):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if sum(float(getattr(self, n)) for n in _RATES) > 1.0:
            raise ValueError(f"the sum of {', '.join(_RATES)} must not exceed 1")
        if self.listing_delay_seconds < 0:
            raise ValueError(
                f"listing_delay_seconds must be >= 0, got {self.listing_delay_seconds}"
            )
        if self.qps < 1:
            raise ValueError(f"qps must be at least 1, got {self.qps}")
        if self.unknown_instance not in ("88", "flat"):
            raise ValueError("unknown_instance must be '88' or 'flat'")
        if self.v1_auth_status not in (400, 401):
            raise ValueError("v1_auth_status must be 400 or 401")
        if self.throttle_code not in ("90018", "90019"):
            raise ValueError("throttle_code must be '90018' or '90019'")
        if not 1 <= self.listing_cap <= 10_000:
            raise ValueError(f"listing_cap must be in [1, 10000], got {self.listing_cap}")

    def patched(self, changes: dict[str, Any]) -> Faults:
        """A copy with ``changes`` applied; raises ValueError on an unknown or invalid knob."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown knobs {unknown}; known {sorted(known)}")
        try:
            return Faults(**{**asdict(self), **changes})
        except TypeError as exc:
            raise ValueError(str(exc)) from exc

    def as_json(self) -> dict[str, Any]:
        """Every knob, for ``GET /_sandbox/faults``."""
        return asdict(self)
