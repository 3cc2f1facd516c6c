"""Sandbox state: instances on a controllable clock, tokens, per-(app, API) QPS, a request log."""

from __future__ import annotations

import random
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from dingdee_sandbox.demo_org import DEMO_APP, DEPARTMENTS
from dingdee_sandbox.dingtalk.generator import (
    DEPT,
    PETTY,
    Instance,
    department_form,
    instance_id,
    originator,
    petty_cash_form,
)

__all__ = ["CST", "Faults", "State"]

CST = timezone(timedelta(hours=8))
TOKEN_TTL_MS = 7_200_000
DAY_MS = 86_400_000


def cst(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, CST).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class Faults:
    """Scriptable transient faults (rates in [0, 1])."""

    busy_rate: float = 0.0  # errcode -1 系统繁忙
    http_500_rate: float = 0.0
    global_qps_rate: float = 0.0  # errcode 88 / 90002 (all apps over the API's global QPS)
    malformed_rate: float = 0.0  # a body that is not JSON
    slow_rate: float = 0.0  # answer after slow_seconds (beyond a client timeout)
    slow_seconds: float = 15.0
    qps: int = 20  # per (app, API) sliding second
    monthly_quota: int | None = None  # metered calls before errcode 90020; token calls exempt
    seed: int = 0


@dataclass
class State:
    seed: int = 7
    manual_now_ms: int | None = None
    instances: dict[str, Instance] = field(default_factory=dict)
    tokens: dict[str, tuple[str, int]] = field(default_factory=dict)  # app_key -> (token, exp)
    revoked: set[str] = field(default_factory=set)
    faults: Faults = field(default_factory=Faults)
    requests: list[dict[str, Any]] = field(default_factory=list)
    windows: dict[tuple[str, str], deque[float]] = field(default_factory=dict)
    listeners: list[Callable[[str, str, str], None]] = field(default_factory=list)
    metered_calls: int = 0
    _seq: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.fault_rng = random.Random(self.faults.seed)

    # ---- clock -----------------------------------------------------------------------------

    def now_ms(self) -> int:
        return self.manual_now_ms if self.manual_now_ms is not None else int(time.time() * 1000)

    # ---- tokens ----------------------------------------------------------------------------

    def issue_token(self, app_key: str) -> str:
        """While valid the same token is returned and its expiry extended (contract §1.3)."""
        now = self.now_ms()
        token, expires = self.tokens.get(app_key, ("", 0))
        if not token or expires <= now or token in self.revoked:
            token = secrets.token_hex(16)
        self.tokens[app_key] = (token, now + TOKEN_TTL_MS)
        return token

    def app_of_token(self, token: str | None) -> str | None:
        now = self.now_ms()
        for app_key, (value, expires) in self.tokens.items():
            if token and value == token and expires > now and token not in self.revoked:
                return app_key
        return None

    def throttled(self, app_key: str, api: str) -> bool:
        """Sliding one-second window per (app, API); rejected calls are not counted."""
        window = self.windows.setdefault((app_key, api), deque())
        now = time.monotonic()
        while window and now - window[0] >= 1.0:
            window.popleft()
        if len(window) >= self.faults.qps:
            return True
        window.append(now)
        return False

    # ---- instances -------------------------------------------------------------------------

    def _next_business_id(self, create_ms: int) -> str:
        self._seq += 1
        stamp = datetime.fromtimestamp(create_ms / 1000, CST).strftime("%Y%m%d%H%M")
        return f"{stamp}{self._seq:09d}"

    def create(self, process_code: str, create_ms: int | None = None) -> Instance:
        create_ms = create_ms or self.now_ms()
        userid, name, dept_id = originator(self.rng)
        day = datetime.fromtimestamp(create_ms / 1000, CST).strftime("%Y-%m-%d")
        if process_code == DEPT:
            form = department_form(self.rng, day, f"BM{9000 + self._seq + 1:06d}")
            template = "部门新建申请"
        else:
            handler = originator(self.rng)
            form = petty_cash_form(self.rng, day, (handler[0], handler[1]))
            template = "备用金补单"
        inst = Instance(
            id=instance_id(self.rng, create_ms),
            process_code=process_code,
            create_ms=create_ms,
            business_id=self._next_business_id(create_ms),
            originator=userid,
            dept_id=dept_id,
            title=f"{name}提交的{template}",
            form=form,
        )
        self.instances[inst.id] = inst
        self._notify(inst, "start")
        return inst

    def finish(self, instance_id: str, action: str) -> Instance:
        inst = self.instances[instance_id]
        if action in ("modify", "revoke"):
            return self._linked(inst, action.upper())
        if inst.status not in ("NEW", "RUNNING"):
            raise ValueError(f"instance {instance_id} is {inst.status}, not running")
        inst.finish_ms = self.now_ms()
        if action == "terminate":
            inst.status, inst.result = "TERMINATED", ""
        else:
            inst.status, inst.result = "COMPLETED", "agree" if action == "approve" else "refuse"
        self._notify(inst, "terminate" if action == "terminate" else "finish")
        return inst

    def _linked(self, original: Instance, biz_action: str) -> Instance:
        if original.status != "COMPLETED" or original.result != "agree":
            raise ValueError(f"only approved instances can be {biz_action.lower()}d")
        linked = self.create(original.process_code)
        linked.biz_action = biz_action
        linked.main_id = original.id
        linked.form = original.form
        original.attached.append(linked.id)
        return linked

    def _notify(self, inst: Instance, change: str) -> None:
        for listener in self.listeners:
            listener(inst.id, inst.process_code, change)

    def seed_demo(self, count: int) -> None:
        """``count`` petty-cash approvals plus ``count // 15`` department requests, last 30 days."""
        now = self.now_ms()
        codes = [PETTY] * count + [DEPT] * (count // 15)
        self.rng.shuffle(codes)
        for code in codes:
            created = now - self.rng.randint(DAY_MS // 24, 30 * DAY_MS)
            inst = self.create(code, created)
            roll = self.rng.random()
            finish = min(now, created + self.rng.randint(600_000, 2 * DAY_MS))
            if roll < 0.04:
                continue  # still running
            inst.finish_ms = finish
            if roll < 0.88:
                inst.status, inst.result = "COMPLETED", "agree"
            elif roll < 0.95:
                inst.status, inst.result = "COMPLETED", "refuse"
            else:
                inst.status, inst.result = "TERMINATED", ""

    def listed(self, process_code: str, start: int, end: int) -> list[str]:
        chosen = [
            i
            for i in self.instances.values()
            if i.process_code == process_code and start <= i.create_ms <= end
        ]
        chosen.sort(key=lambda i: (i.create_ms, i.id))
        return [i.id for i in chosen]

    def render(self, inst: Instance) -> dict[str, Any]:
        """The ``process_instance`` object of ``get`` (snake_case, no id, CST strings)."""
        dept = next((d for d in DEPARTMENTS if d.dingtalk_id == inst.dept_id), DEPARTMENTS[0])
        body: dict[str, Any] = {
            "title": inst.title,
            "create_time": cst(inst.create_ms),
            "originator_userid": inst.originator,
            "originator_dept_id": inst.dept_id,
            "originator_dept_name": dept.name,
            "status": inst.status,
            "result": inst.result,
            "business_id": inst.business_id,
            "cc_userids": [],
            "biz_action": inst.biz_action,
            "attached_process_instance_ids": list(inst.attached),
            "form_component_values": inst.form,
            "operation_records": [
                {
                    "userid": inst.originator,
                    "date": cst(inst.create_ms),
                    "operation_type": "START_PROCESS_INSTANCE",
                    "operation_result": "NONE",
                }
            ],
            "tasks": [],
        }
        if inst.finish_ms is not None and inst.status != "RUNNING":
            body["finish_time"] = cst(inst.finish_ms)
        if inst.main_id:
            body["main_process_instance_id"] = inst.main_id
        return body

    def summary(self, inst: Instance) -> dict[str, Any]:
        return {
            "id": inst.id,
            "process_code": inst.process_code,
            "business_id": inst.business_id,
            "status": inst.status,
            "result": inst.result,
            "biz_action": inst.biz_action,
            "create_time_ms": inst.create_ms,
            "finish_time_ms": inst.finish_ms,
            "main_process_instance_id": inst.main_id,
            "attached_process_instance_ids": list(inst.attached),
        }


def demo_app_key() -> str:
    return DEMO_APP.app_key
