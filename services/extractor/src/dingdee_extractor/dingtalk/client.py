"""The DingTalk old-host client: the only place httpx errors and errcodes become the taxonomy.

Contract: ``contracts/dingtalk.md`` §1–§3, §5. Old-host errors come back as HTTP 200 with a
non-zero ``errcode``; auth and throttling hide inside ``errcode 88`` with a string ``sub_code``,
or arrive flat (``errcode`` 90018 itself), and ``errcode`` may be a number or a numeric string:
:func:`answer_code` reads every such shape as one code. The per-IP anti-abuse ban answers a body
without ``errcode`` at all (§5.1, ``{"status":1111,…,"punish":"deny"}``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from dingdee_common.errors import FatalError, PermanentError, TransientError
from dingdee_common.observability.logging import get_logger
from dingdee_extractor.dingtalk.ratelimit import RateLimits
from dingdee_extractor.metrics import ExtractorMetrics
from dingdee_extractor.settings import DingTalkApp, DingTalkSettings

__all__ = [
    "AUTH_CODES",
    "DingTalkClient",
    "DingTalkPunishedError",
    "DingTalkUnavailableError",
    "IdPage",
    "QuotaExhaustedError",
    "answer_code",
]

log = get_logger(__name__)

AUTH_CODES = frozenset({"40000", "40014", "42001", "40001", "33001", "41001"})
_BUSY_CODES = frozenset({"-1"})
_APP_QPS = "90018"
_ISV_QPS = "90019"  # an ISV app's per-org, per-API limit: a per-second window like 90018 (§5.1)
_GLOBAL_QPS = "90002"
_QUOTA = "90020"


def answer_code(body: dict[str, Any]) -> tuple[int | None, str]:
    """``(errcode, code)`` of an old-host answer, whatever shape it came in.

    ``errcode`` as an int (None when absent or not numeric: ``0`` and ``"0"`` alike);
    ``code`` the string that names the condition: the ``sub_code`` inside ``errcode 88``, else
    the ``errcode`` itself, so a flat ``90018`` and ``88``/``"90018"`` read the same.
    """
    raw = body.get("errcode")
    try:
        code = int(raw) if raw is not None and not isinstance(raw, bool) else None
    except (TypeError, ValueError):
        code = None
    sub = str(body.get("sub_code") or "")
    if code == 88 and sub:
        return code, sub
    return code, "" if code is None else str(code)


def is_punished(body: dict[str, Any]) -> bool:
    """The per-egress-IP anti-abuse ban (§5.1): ``{"status":1111,…,"punish":"deny"}``."""
    return "errcode" not in body and (body.get("punish") == "deny" or body.get("status") == 1111)


class QuotaExhaustedError(TransientError):
    """The organisation's monthly call allowance is spent (90020): wait, do not hammer."""


class DingTalkPunishedError(TransientError):
    """DingTalk's anti-abuse gate banned this egress IP (§5.1: 5 minutes, for every app and
    API): wait the whole ban out; a short backoff only prolongs it (§5.4)."""


class DingTalkUnavailableError(TransientError):
    """DingTalk as a whole does not answer (down, busy, 5xx, throttling): wait, then resume.

    Raised by the poller, not by a single call: a call outlived its retry budget and no other
    call of the same app was answered meanwhile. It is back-pressure, never a dead letter.
    """


class _AuthError(Exception):
    """The token was rejected; refresh once and retry (internal to the client)."""


@dataclass
class IdPage:
    ids: list[str]
    next_cursor: int | None


@dataclass
class _Token:
    value: str
    expires_at: float


@dataclass
class _AppState:
    app: DingTalkApp
    token: _Token | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    global_backoff: float = 0.0
    answered_at: float = 0.0  # monotonic time of the last call DingTalk answered with errcode 0


class DingTalkClient:
    """One client per deployment; one token per app and one token bucket per (app, API path).

    Every call goes through :meth:`_checked`, which waits for the bucket of its endpoint path
    (:class:`RateLimits`): a new endpoint needs nothing more than its path to be rate-limited.
    """

    def __init__(
        self,
        settings: DingTalkSettings,
        metrics: ExtractorMetrics,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._http = http or httpx.AsyncClient(
            base_url=settings.base_url.rstrip("/"), timeout=settings.timeout_seconds
        )
        self._apps = {name: _AppState(app) for name, app in settings.apps.items()}
        self.limits = RateLimits(settings.qps, settings.qps_margin)
        self._punished_until = 0.0  # monotonic end of an anti-abuse ban (the IP's, every app's)

    async def aclose(self) -> None:
        await self._http.aclose()

    def answered_since(self, app: str, since: float) -> bool:
        """Whether DingTalk answered a call of ``app`` successfully after ``since`` (monotonic)."""
        return self._state(app).answered_at > since

    async def pace(self, app: str, api: str) -> None:
        """Wait for ``api``'s token bucket of ``app`` (the v1.0 follow-up calls share it)."""
        self._check_ban(app)
        self._state(app)  # an unknown app is a configuration error
        waited = await self.limits.acquire(app, api)
        if waited:
            self._metrics.rate_limit_wait.labels(app, api).inc(waited)

    def _state(self, app: str) -> _AppState:
        try:
            return self._apps[app]
        except KeyError:
            raise FatalError(
                f"flow uses DingTalk app {app!r} but DINGDEE_DINGTALK__APPS has only "
                f"{sorted(self._apps)}",
                code="config",
            ) from None

    # ---- tokens ----------------------------------------------------------------------------

    async def token(self, app: str) -> str:
        """A valid access token for ``app``; refreshed before expiry, never twice at once."""
        state = self._state(app)
        margin = self._settings.token_refresh_margin_seconds
        if state.token and time.monotonic() < state.token.expires_at - margin:
            return state.token.value
        async with state.lock:
            if state.token and time.monotonic() < state.token.expires_at - margin:
                return state.token.value
            reason = "expiry" if state.token else "startup"
            state.token = await self._fetch_token(app, state.app)
            self._metrics.token_refreshes.labels(app, reason).inc()
            return state.token.value

    async def _fetch_token(self, app: str, creds: DingTalkApp) -> _Token:
        params = {"appkey": creds.app_key, "appsecret": creds.app_secret.get_secret_value()}
        self._check_ban(app)
        body = await self._send(app, "gettoken", "GET", "/gettoken", params=params)
        self._check_punished(app, body)
        code, _ = answer_code(body)
        if code != 0:
            message = f"DingTalk gettoken for app {app!r} failed: {code} {body.get('errmsg')}"
            if code in (40096, 40089, 40001, 40035):
                raise FatalError(
                    message + "; check DINGDEE_DINGTALK__APPS app_key/app_secret", code=str(code)
                )
            raise TransientError(message, code=str(code))
        return _Token(str(body["access_token"]), time.monotonic() + float(body["expires_in"]))

    async def _invalidate(self, app: str, token: str) -> None:
        state = self._state(app)
        async with state.lock:
            if state.token and state.token.value == token:
                state.token = None

    # ---- API calls --------------------------------------------------------------------------

    async def listids(
        self, app: str, process_code: str, start_ms: int, end_ms: int, cursor: int
    ) -> IdPage:
        """One page of instance ids created in ``[start_ms, end_ms]``."""
        payload = {
            "process_code": process_code,
            "start_time": start_ms,
            "end_time": end_ms,
            "size": self._settings.page_size,
            "cursor": cursor,
        }
        body = await self._call(app, "listids", "/topapi/processinstance/listids", payload)
        result = body.get("result") or {}
        next_cursor = result.get("next_cursor")
        return IdPage(
            [str(i) for i in result.get("list") or []],
            int(next_cursor) if next_cursor not in (None, "", 0) else None,
        )

    async def get(self, app: str, instance_id: str) -> dict[str, Any]:
        """The ``process_instance`` of one instance (without its id, as DingTalk sends it)."""
        body = await self._call(
            app, "get", "/topapi/processinstance/get", {"process_instance_id": instance_id}
        )
        instance = body.get("process_instance")
        if not isinstance(instance, dict):
            raise TransientError(f"get {instance_id}: response without process_instance")
        return instance

    async def contacts(
        self, app: str, api: str, path: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        """A contacts call (dingtalk.md §9.1: ``/topapi/v2/user/list`` …) through the app's token
        and token bucket, counted per ``api`` like every call (issue #14)."""
        return await self._call(app, api, path, payload)

    async def _call(self, app: str, api: str, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """One attempt of a call: a rejected token is refreshed and the call resent once.

        The resend is part of the attempt, not a retry: its cause is known and cured before it
        (a new token), it waits for nothing and spends no retry budget. Retries of transient
        failures, this one included, are the caller's (``retry_transient`` in the poller).

        Raises:
            TransientError: DingTalk rejected the fresh token too (``code="auth"``).
        """
        token = await self.token(app)
        try:
            return await self._checked(app, api, path, payload, token)
        except _AuthError:
            await self._rejected(app, token)
        token = await self.token(app)
        try:
            return await self._checked(app, api, path, payload, token)
        except _AuthError:
            await self._rejected(app, token)
            raise TransientError(
                f"DingTalk rejected a fresh token for app {app!r}", code="auth"
            ) from None

    async def _rejected(self, app: str, token: str) -> None:
        await self._invalidate(app, token)
        self._metrics.token_refreshes.labels(app, "rejected").inc()

    async def _checked(
        self, app: str, api: str, path: str, payload: dict[str, Any], token: str
    ) -> dict[str, Any]:
        state = self._state(app)
        self._check_ban(app)
        if state.global_backoff > time.monotonic():
            await asyncio.sleep(state.global_backoff - time.monotonic())
        waited = await self.limits.acquire(app, path)
        if waited:
            self._metrics.rate_limit_wait.labels(app, api).inc(waited)
        body = await self._send(
            app, api, "POST", path, params={"access_token": token}, json=payload
        )
        return self._interpret(app, api, path, body)

    def _interpret(self, app: str, api: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self._check_punished(app, body)
        code, what = answer_code(body)
        if code == 0:
            self._state(app).answered_at = time.monotonic()
            return body
        sub = str(body.get("sub_code") or "")
        text = f"DingTalk {api}: errcode {code} {sub} {body.get('sub_msg') or body.get('errmsg')}"
        if what in AUTH_CODES:
            raise _AuthError(text)
        if what in (_APP_QPS, _ISV_QPS):  # a 1-second window: the next second (§5.4)
            self.limits.penalise(app, path, 1.0)
            raise TransientError(text, retry_after=1.0 - (time.time() % 1.0), code=what)
        if what == _GLOBAL_QPS:  # exponential: 1 s, 2 s, 4 s … (§5.4), capped
            state = self._state(app)
            pause = min(60.0, max(1.0, 2 * (state.global_backoff - time.monotonic() + 1)))
            state.global_backoff = time.monotonic() + pause
            raise TransientError(text, retry_after=pause, code=_GLOBAL_QPS)
        if what in _BUSY_CODES:
            raise TransientError(text, code="system_busy")
        if what == _QUOTA:
            raise QuotaExhaustedError(text, retry_after=3600.0, code=_QUOTA)
        if code is None:  # no errcode at all: not an answer about this call
            raise TransientError(f"DingTalk {api}: answer without errcode {body}", code="malformed")
        raise PermanentError(text, code=f"errcode_{code}{'_' + sub if sub else ''}")

    def _check_ban(self, app: str) -> None:
        """While a ban lasts, fail at once: a call made during it may extend it."""
        left = self._punished_until - time.monotonic()
        if left > 0:
            raise DingTalkPunishedError(
                f"DingTalk app {app!r}: anti-abuse ban (punish=deny) of this IP, {left:.0f}s left",
                retry_after=left,
                code="punished",
            )

    def _check_punished(self, app: str, body: dict[str, Any]) -> None:
        """The anti-abuse body: start the ban (every app of this client) and raise."""
        if not is_punished(body):
            return
        pause = self._settings.punish_pause_seconds
        self._punished_until = max(self._punished_until, time.monotonic() + pause)
        self._metrics.punished.labels(app).inc()
        log.error(
            "extractor.dingtalk.punished",
            app=app,
            pause_seconds=pause,
            body=orjson.dumps(body).decode()[:300],
        )
        self._check_ban(app)

    async def _send(
        self, app: str, api: str, method: str, path: str, **kwargs: Any
    ) -> dict[str, Any]:
        started = time.monotonic()
        errcode = "transport"
        try:
            response = await self._http.request(method, path, **kwargs)
            if response.status_code >= 500:
                errcode = f"http_{response.status_code}"
                raise TransientError(f"DingTalk {api}: HTTP {response.status_code}", code=errcode)
            try:
                body = orjson.loads(response.content)
            except orjson.JSONDecodeError as exc:
                errcode = "malformed"
                raise TransientError(f"DingTalk {api}: body is not JSON", code=errcode) from exc
            if not isinstance(body, dict):
                errcode = "malformed"
                raise TransientError(f"DingTalk {api}: body is not an object", code=errcode)
            _, what = answer_code(body)
            errcode = "punished" if is_punished(body) else (what or "none")
            return body
        except httpx.TimeoutException as exc:
            errcode = "timeout"
            raise TransientError(f"DingTalk {api}: timed out", code=errcode) from exc
        except httpx.TransportError as exc:
            raise TransientError(f"DingTalk {api}: {type(exc).__name__}", code=errcode) from exc
        finally:
            self._metrics.requests.labels(app, api, errcode).inc()
            self._metrics.request_duration.labels(api).observe(time.monotonic() - started)
