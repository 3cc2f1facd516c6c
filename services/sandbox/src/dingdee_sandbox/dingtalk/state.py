"""Sandbox state: instances on a controllable clock, tokens, limits, listeners, a request log.

One ``State`` per sandbox; the HTTP handlers and the ``/_sandbox/`` control API read and
mutate it, and in-process tests may do so directly.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from dingdee_sandbox.demo_org import DEMO_APP, EMPLOYEES
from dingdee_sandbox.dingtalk.config import Faults
from dingdee_sandbox.dingtalk.directory import Directory
from dingdee_sandbox.dingtalk.files import FileStore
from dingdee_sandbox.dingtalk.generator import (
    DEPT,
    PETTY,
    Instance,
    department_form,
    instance_id,
    originator,
    petty_cash_form,
)
from dingdee_sandbox.dingtalk.limits import Limiter
from dingdee_sandbox.dingtalk.templates import demo_schemas
from dingdee_sandbox.dingtalk.tokens import TOKEN_TTL_MS, TokenStore

__all__ = ["CST", "DAY_MS", "TOKEN_TTL_MS", "Faults", "Listener", "State", "cst"]

CST = timezone(timedelta(hours=8))
DAY_MS = 86_400_000
ACTIONS = ("approve", "refuse", "terminate", "modify", "revoke")
Listener = Callable[[str, str, str], None]


def cst(ms: int) -> str:
    """Epoch milliseconds as DingTalk's old-host wall time: ``yyyy-MM-dd HH:mm:ss`` in CST."""
    return datetime.fromtimestamp(ms / 1000, CST).strftime("%Y-%m-%d %H:%M:%S")


def _who(
    userid: str | None, drawn: tuple[str, str, str], contacts: Directory
) -> tuple[str, str, str]:
    """(userid, name, dept id) of a given demo employee or contacts user, else the drawn one.

    Raises:
        KeyError: ``userid`` is neither a demo employee nor in the contacts directory.
    """
    if userid is None:
        return drawn
    user = contacts.users.get(userid)  # a hire added through /_sandbox/contacts/users
    if user is not None:
        return user.userid, user.name, str(user.dept_ids[0])
    who = next((e for e in EMPLOYEES if e.userid == userid), None)
    if who is None:
        raise KeyError(f"unknown originator {userid}")
    return who.userid, who.name, who.dept_id


@dataclass
class State:
    """Everything the sandbox knows. ``listeners`` get ``(instance_id, process_code, change)``
    with change ``start``, ``finish`` or ``terminate`` on every create and status change."""

    seed: int = 7
    manual_now_ms: int | None = None
    instances: dict[str, Instance] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    requests: list[dict[str, Any]] = field(default_factory=list)
    listeners: list[Listener] = field(default_factory=list)
    token_store: TokenStore = field(default_factory=TokenStore)
    limiter: Limiter = field(default_factory=Limiter)
    apps: dict[str, str] = field(default_factory=lambda: {DEMO_APP.app_key: DEMO_APP.app_secret})
    schemas: dict[str, dict[str, Any]] = field(default_factory=demo_schemas)
    files: FileStore = field(default_factory=FileStore)  # attachments, comments (§9.3, §9.4)
    contacts: Directory = field(default_factory=Directory.demo)  # dingtalk.md §9.1
    _seq: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.fault_rng = random.Random(self.faults.seed)

    # ---- clock, tokens, counters -----------------------------------------------------------

    def now_ms(self) -> int:
        """The sandbox clock: real time, or the manual time set by the control API."""
        return self.manual_now_ms if self.manual_now_ms is not None else int(time.time() * 1000)

    @property
    def tokens(self) -> dict[tuple[str, str], tuple[str, int]]:
        """Current tokens: (app key, host) → (token, expiry ms)."""
        return self.token_store.tokens

    @property
    def revoked(self) -> set[str]:
        """Revoked tokens (rejected as invalid); tests may add to it directly."""
        return self.token_store.revoked

    @property
    def metered_calls(self) -> int:
        """Metered calls counted in the current quota month."""
        return self.limiter.metered_calls

    def issue_token(self, app_key: str, host: str = "old") -> str:
        """Issue or extend ``app_key``'s token on ``host`` (contract §1.3)."""
        return self.token_store.issue(app_key, host, self.now_ms())

    def app_of_token(self, token: str | None, host: str = "old") -> str | None:
        """The app key owning a valid ``token``, else None."""
        verdict, app = self.token_store.check(
            token, host, self.now_ms(), cross_host=self.faults.cross_host_tokens
        )
        return app if verdict == "ok" else None

    def set_faults(self, faults: Faults) -> None:
        """Replace the knobs; a changed ``seed`` restarts the fault generator."""
        if faults.seed != self.faults.seed:
            self.fault_rng = random.Random(faults.seed)
        self.faults = faults

    # ---- instances -------------------------------------------------------------------------

    def _next_business_id(self, create_ms: int) -> str:
        self._seq += 1
        stamp = datetime.fromtimestamp(create_ms / 1000, CST).strftime("%Y%m%d%H%M")
        return f"{stamp}{self._seq:09d}"

    def _form(self, process_code: str, day: str, table_rows: int | None) -> list[dict[str, Any]]:
        if process_code == DEPT:
            return department_form(self.rng, day, f"BM{9000 + self._seq + 1:06d}")
        handler = originator(self.rng)
        return petty_cash_form(self.rng, day, (handler[0], handler[1]), table_rows)

    def create(
        self,
        process_code: str,
        create_ms: int | None = None,
        *,
        form: list[dict[str, Any]] | None = None,
        originator_userid: str | None = None,
        table_rows: int | None = None,
        biz_action: str = "NONE",
        main_id: str | None = None,
    ) -> Instance:
        """A new RUNNING instance with generated (or given) form values; notifies ``start``.

        Raises:
            KeyError: ``originator_userid`` is not a demo employee.
        """
        create_ms = create_ms or self.now_ms()
        userid, name, dept_id = _who(originator_userid, originator(self.rng), self.contacts)
        day = datetime.fromtimestamp(create_ms / 1000, CST).strftime("%Y-%m-%d")
        generated = self._form(process_code, day, table_rows)
        template = "部门新建申请" if process_code == DEPT else "备用金补单"
        inst = Instance(
            id=instance_id(self.rng, create_ms),
            process_code=process_code,
            create_ms=create_ms,
            business_id=self._next_business_id(create_ms),
            originator=userid,
            dept_id=dept_id,
            title=f"{name}提交的{template}",
            form=form if form is not None else generated,
            biz_action=biz_action,
            main_id=main_id,
            approver=self.rng.choice([e for e in EMPLOYEES if e.userid != userid]).userid,
            task_id=str(self.rng.randint(10**10, 10**11 - 1)),
        )
        self.instances[inst.id] = inst
        self._notify(inst, "start")
        return inst

    def finish(self, instance_id: str, action: str) -> Instance:
        """Apply ``action`` (approve, refuse, terminate, modify, revoke) to an instance.

        approve/refuse/terminate end a running instance (notifying ``finish``/``terminate``);
        modify/revoke of an approved instance return the new linked instance.

        Raises:
            KeyError: no such instance.
            ValueError: unknown action, or the instance is in the wrong state for it.
        """
        inst = self.instances[instance_id]
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; known {list(ACTIONS)}")
        if action in ("modify", "revoke"):
            return self._linked(inst, action.upper())
        if inst.status not in ("NEW", "RUNNING"):
            raise ValueError(f"instance {instance_id} is {inst.status}, not running")
        inst.finish_ms = max(self.now_ms(), inst.create_ms)
        if action == "terminate":
            inst.status, inst.result = "TERMINATED", ""
        else:
            inst.status, inst.result = "COMPLETED", "agree" if action == "approve" else "refuse"
        self._notify(inst, "terminate" if action == "terminate" else "finish")
        return inst

    def _linked(self, original: Instance, biz_action: str) -> Instance:
        if original.status != "COMPLETED" or original.result != "agree":
            raise ValueError(f"only approved instances can be {biz_action.lower()}d")
        linked = self.create(
            original.process_code,
            form=[dict(c) for c in original.form],
            originator_userid=original.originator,
            biz_action=biz_action,
            main_id=original.id,
        )
        original.attached.append(linked.id)
        return linked

    def _notify(self, inst: Instance, change: str) -> None:
        for listener in list(self.listeners):
            listener(inst.id, inst.process_code, change)

    def seed_demo(self, count: int) -> None:
        """``count`` petty-cash approvals plus ``count // 15`` department requests over the
        last 30 days: ~85 % approved, the rest refused, terminated or still running."""
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
            if roll < 0.89:
                inst.status, inst.result = "COMPLETED", "agree"
            elif roll < 0.95:
                inst.status, inst.result = "COMPLETED", "refuse"
            else:
                inst.status, inst.result = "TERMINATED", ""

    def listed(
        self, process_code: str, start: int, end: int, userids: list[str] | None = None
    ) -> list[str]:
        """Ids of ``process_code`` created in ``[start, end]`` (inclusive), oldest first, ties
        by id; optionally only these originators and the configured department scope."""
        scope = self.faults.scope_dept_ids
        delay_ms = int(self.faults.listing_delay_seconds * 1000)
        visible_until = self.now_ms() - delay_ms if delay_ms else None
        chosen = [
            i
            for i in self.instances.values()
            if i.process_code == process_code
            and start <= i.create_ms <= end
            and (visible_until is None or i.create_ms <= visible_until)
            and (not userids or i.originator in userids)
            and (scope is None or i.dept_id in scope)
        ]
        chosen.sort(key=lambda i: (i.create_ms, i.id))
        return [i.id for i in chosen]

    def summary(self, inst: Instance) -> dict[str, Any]:
        """One row of ``GET /_sandbox/instances``."""
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

    def expected(self) -> list[dict[str, str]]:
        """What must become bills: COMPLETED + agree with ``biz_action`` NONE, sorted."""
        rows = [
            {
                "process_code": i.process_code,
                "process_instance_id": i.id,
                "business_id": i.business_id,
            }
            for i in self.instances.values()
            if i.status == "COMPLETED" and i.result == "agree" and i.biz_action == "NONE"
        ]
        rows.sort(key=lambda r: (r["process_code"], r["process_instance_id"]))
        return rows
