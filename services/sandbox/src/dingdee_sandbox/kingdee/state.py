"""Sandbox configuration (credentials, latency, fault knobs) and mutable state (contract §8.5)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from dingdee_sandbox.kingdee.attachments import AttachmentStore
from dingdee_sandbox.kingdee.masterdata import seed_master_data
from dingdee_sandbox.kingdee.store import Store

__all__ = ["FAULT_KINDS", "SandboxConfig", "SandboxState", "Session"]

FaultKind = Literal[
    "http_500", "http_502", "http_503", "response_error", "slow", "commit_then_drop"
]
# one-shot faults (``POST /_sandbox/faults``), each a shape of kingdee.md:
# http_5xx: IIS error page (text/html, §0.3 item 1, §8.1 item 3); html_200: an IIS/login HTML page
# with status 200 (§0.3: only JSON is an answer); empty_200: the call runs (a write commits) and
# the body is empty (§3.5: outcome unknown); session_expired: the caller's session ends before
# the call (§1.5, §8.2 item 7); msgcode_N: ``IsSuccess: false`` naming no package with MsgCode N
# (§3.3; 2 no permission, 4 exception, 6 database, 7 licence, 13 network control, 14 call limited,
# 15 administrator login forbidden)
FAULT_KINDS: tuple[str, ...] = (
    "http_500",
    "http_502",
    "http_503",
    "response_error",
    "slow",
    "commit_then_drop",
    "html_200",
    "empty_200",
    "session_expired",
    "msgcode_2",
    "msgcode_4",
    "msgcode_6",
    "msgcode_7",
    "msgcode_13",
    "msgcode_14",
    "msgcode_15",
)
_WRITES = ("save", "batchsave", "attachmentupload")  # commit-then-drop hook: kingdee.md §10.5.4


class SandboxConfig(BaseModel):
    """Everything a run of the sandbox can be told; every field can be changed at run time."""

    model_config = ConfigDict(extra="forbid")

    acct_id: str = "5db25ac8d2b819"
    username: str = "webapi"
    password: str = "demo-password"  # noqa: S105 - the public demo credential of the sandbox
    app_id: str = "204399_72epSbtEQMC92Vwt2d3LRa9LRqSc1tqJ"
    app_secret: str = "fb7d46647ac346dbb5fcd45b65512a45"  # noqa: S105 - public SDK sample value
    session_ttl_seconds: float = Field(default=1200.0, gt=0)
    workers: int = Field(default=8, ge=1, description="requests processed at once, all sessions")
    latency_call_seconds: float = Field(default=0.0, ge=0)
    latency_package_seconds: float = Field(default=0.0, ge=0)
    latency_row_seconds: float = Field(default=0.0, ge=0)
    http_5xx_rate: float = Field(default=0.0, ge=0, le=1)
    response_error_rate: float = Field(default=0.0, ge=0, le=1)
    response_error_message: str = Field(
        default="由于目标计算机积极拒绝，无法连接。(sandbox fault)",
        description="Message of an injected response_error: body (contract §0.4, §8.5 item 25), "
        "e.g. 服务繁忙，请稍后再试 for a busy server",
    )
    response_error_numbers: list[str] = Field(
        default_factory=list,
        description="a Save/BatchSave carrying one of these bill numbers answers response_error: "
        "(a plugin or DB exception on that data aborting the call, contract §3.5)",
    )
    slow_rate: float = Field(default=0.0, ge=0, le=1)
    slow_seconds: float = Field(default=30.0, ge=0)
    commit_then_drop_rate: float = Field(default=0.0, ge=0, le=1)
    drop_keep_fraction: float = Field(
        default=1.0, ge=0, le=1, description="share of packages committed before the drop"
    )
    attachment_max_chunk_bytes: int = Field(
        default=4 << 20,
        ge=1,
        description="largest decoded AttachmentUpload chunk (kingdee.md §10.4.1)",
    )
    fault_services: list[str] = Field(
        default_factory=lambda: ["save", "batchsave", "executebillquery", "billquery", "view"]
    )
    overload_queue_depth: int = Field(
        default=0, ge=0, description="calls waiting beyond this depth overload the server; 0 = off"
    )
    overload_extra_seconds: float = Field(default=0.5, ge=0)
    overload_error_rate: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="share of overloaded calls answered HTTP 500/MsgCode 14",
    )
    all_or_nothing: bool = False
    signature_max_skew_seconds: float = Field(
        default=0.0, ge=0, description="reject signed calls this far from now (s or ms); 0 = off"
    )
    reject_replayed_nonce: bool = Field(
        default=False,
        description="reject a (nonce, signature) pair seen before (SDK nonces repeat)",
    )
    login_lockout_after: int = Field(
        default=0, ge=0, description="lock a user after this many failed logins; 0 = off"
    )
    locked_users: list[str] = Field(
        default_factory=list,
        description="users an administrator locked: their login fails with LoginResultType -1 "
        "(contract §1.2 login errors) until removed from this list",
    )
    row_msgcode_numbers: dict[str, int] = Field(
        default_factory=dict,
        description="bill number → MsgCode: a Save/BatchSave carrying it fails, saving nothing, "
        "with an error naming that package's DIndex and FBillNo (contract §3.2–§3.4)",
    )
    bad_signature_message: str = "签名验证失败：请检查应用ID（AppID）与应用密钥（AppSecret）"
    session_lost_message: str = Field(
        default="会话信息已丢失，请重新登录",
        description="text of the MsgCode 1 answer to a lost session (contract §1.5); messages "
        "follow the lcid (§3.4), e.g. an English server's wording",
    )
    seed: int | None = None


@dataclass
class Session:
    id: str
    acct_id: str
    username: str
    lcid: int
    last_used: float = field(default_factory=time.monotonic)


class SandboxState:
    """The store, sessions, per-session locks, the worker limit, fault queue and statistics."""

    def __init__(self, config: SandboxConfig | None = None, store: Store | None = None) -> None:
        self.config = config or SandboxConfig()
        self.store = store or Store()
        self.attachments = AttachmentStore()  # kingdee.md §10.4
        if store is None:
            seed_master_data(self.store)  # BD_Empinfo, BD_Expense (kingdee.md §10.5 item 1)
        self.sessions: dict[str, Session] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.stats: Counter[str] = Counter()
        self.fault_queue: list[str] = []
        self.async_results: dict[str, Any] = {}
        self.waiting = 0
        self.seen_nonces: set[tuple[str, str]] = set()
        self.failed_logins: Counter[str] = Counter()
        self.rng = random.Random(self.config.seed)
        self._workers: asyncio.Semaphore | None = None
        self._workers_size = 0

    def update_config(self, patch: dict[str, object]) -> SandboxConfig:
        """Apply a partial config (``POST /_sandbox/config``); raises ``ValidationError``."""
        merged = {**self.config.model_dump(), **patch}
        self.config = SandboxConfig.model_validate(merged)
        if "seed" in patch:
            self.rng = random.Random(self.config.seed)
        return self.config

    @property
    def workers(self) -> asyncio.Semaphore:
        if self._workers is None or self._workers_size != self.config.workers:
            self._workers = asyncio.Semaphore(self.config.workers)
            self._workers_size = self.config.workers
        return self._workers

    # ---- sessions ----------------------------------------------------------------------------

    def new_session(self, acct_id: str, username: str, lcid: int) -> Session:
        session = Session(str(uuid.uuid4()), acct_id, username, lcid)
        self.sessions[session.id] = session
        self.stats["sessions_created"] += 1
        return session

    def live_session(self, session_id: str) -> Session | None:
        """The session if it exists and was used within the idle TTL (touching it)."""
        session = self.sessions.get(session_id)
        if session is None:
            return None
        now = time.monotonic()
        if now - session.last_used > self.config.session_ttl_seconds:
            del self.sessions[session_id]
            return None
        session.last_used = now
        return session

    def revoke_sessions(self) -> int:
        count = len(self.sessions)
        self.sessions.clear()
        self.stats["sessions_revoked"] += count
        return count

    def lock_for(self, session_id: str) -> asyncio.Lock:
        return self.locks.setdefault(session_id, asyncio.Lock())

    # ---- faults ------------------------------------------------------------------------------

    def draw_fault(self, method: str) -> str | None:
        """The fault to inject into this call: the queued one first, else by configured rates."""
        if method not in self.config.fault_services:
            return None
        for n, kind in enumerate(self.fault_queue):
            if kind != "commit_then_drop" or method in _WRITES:
                return self.fault_queue.pop(n)
        c = self.config
        roll = self.rng.random()
        for kind, rate in (
            ("http_503", c.http_5xx_rate),
            ("response_error", c.response_error_rate),
            ("slow", c.slow_rate),
            ("commit_then_drop", c.commit_then_drop_rate if method in _WRITES else 0.0),
        ):
            if roll < rate:
                return kind
            roll -= rate
        return None
