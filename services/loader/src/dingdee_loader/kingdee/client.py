"""Async Kingdee WebAPI client (httpx): the only place Kingdee answers become the error taxonomy.

Each :class:`Lane` is one Kingdee session (its own cookie jar and ``kdservice-sessionid``): Kingdee
serialises the calls of one session, so the loader runs one lane per batch in flight.

Whose fault an answer is (kingdee.md §0.3, §1.2, §1.5, §3.3); the sink acts on it (README table):

- the record's: ``IsSuccess: false`` with a record MsgCode (0, 3, 5, 8–12) → per-row outcomes;
- Kingdee's for now (:class:`TransientError`): transport failures, non-200, ``response_error:``,
  an HTML page, an empty or non-JSON body, MsgCode 4 / 6 / 13 / 14, MsgCode 1 after one re-login;
- a setting's (:class:`KingdeeConfigError`, also transient: the loader waits, not ready): a refused
  login (``LoginResultType`` ≠ 1), MsgCode 1 that a re-login does not cure, MsgCode 2 / 7 / 15.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import orjson

from dingdee_common.codec import dumps
from dingdee_common.errors import TransientError
from dingdee_common.kingdee_signing import signature_headers
from dingdee_common.observability.logging import get_logger
from dingdee_loader.kingdee.models import DUPLICATE_PREFIX, SESSION_LOST, RowKind, RowResult
from dingdee_loader.metrics import LoaderMetrics
from dingdee_loader.settings import KingdeeSettings

__all__ = ["KingdeeClient", "KingdeeConfigError", "Lane", "SessionLostError"]

_STUB = "Kingdee.BOS.WebApi.ServicesStub"
SERVICES = {
    "validateuser": f"{_STUB}.AuthService.ValidateUser",
    "batchsave": f"{_STUB}.DynamicFormService.BatchSave",
    "executebillquery": f"{_STUB}.DynamicFormService.ExecuteBillQuery",
    # kingdee.md §10.4.1 (method names are case-insensitive; the community doc's spelling)
    "attachmentupload": f"{_STUB}.DynamicFormService.AttachmentUpLoad",
}
# kingdee.md §3.3: MsgCodes that are not the record's fault. Exception, database failure,
# network-control conflict (a lock), call limited: the call failed, not the data.
TRANSIENT_MSGCODES = frozenset({4, 6, 13, 14})
# no permission, licence error, administrator login forbidden: a setting, fixed by a human
CONFIG_MSGCODES = frozenset({2, 7, 15})
# §1.2 LoginResultType names, for the message of a refused login
LOGIN_RESULTS = {
    0: "PWError (wrong user or password)",
    -1: "Failure",
    -2: "PWInvalid_Optional",
    -3: "PWInvalid_Required (password policy)",
    -4: "Wanning",
    -5: "DealWithForm",
    -6: "EntryCloudUnBind",
    -7: "Activation",
}
log = get_logger(__name__)


class SessionLostError(TransientError):
    """Kingdee answered MsgCode 1 (会话信息已丢失, §1.5): log in again and resend once."""


class KingdeeConfigError(TransientError):
    """Kingdee refuses the loader itself (credentials, lock, permission, licence): no record's
    fault, and not cured by retrying soon. The loader holds its bills and waits, not ready,
    retrying every ``refused_retry_seconds`` (a wrong password retried fast locks the account)."""


class Lane:
    """One Kingdee session: an httpx client with its own cookies, and the session id."""

    def __init__(self, index: int, settings: KingdeeSettings) -> None:
        self.index = index
        self.session_id: str | None = None
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.timeout_seconds),
            limits=httpx.Limits(max_connections=2, max_keepalive_connections=1),
        )

    def forget_session(self) -> None:
        self.session_id = None
        self.http.cookies.clear()

    async def aclose(self) -> None:
        await self.http.aclose()


def _response_status(payload: Any) -> dict[str, Any] | None:
    """``Result.ResponseStatus`` of a write answer or of a wrapped ``[[..]]`` query error."""
    if isinstance(payload, list) and payload and isinstance(payload[0], list) and payload[0]:
        payload = payload[0][0]
    if isinstance(payload, dict):
        result = payload.get("Result")
        if isinstance(result, dict) and isinstance(result.get("ResponseStatus"), dict):
            status: dict[str, Any] = result["ResponseStatus"]
            return status
    return None


def _msgcode(status: dict[str, Any] | None) -> int:
    try:
        return int((status or {}).get("MsgCode") or 0)
    except (TypeError, ValueError):
        return 0


def _html_title(text: str) -> str:
    """The ``<title>`` (or the start) of an IIS error page, for the message."""
    lower = text.lower()
    start, end = lower.find("<title>"), lower.find("</title>")
    if 0 <= start < end:
        return text[start + len("<title>") : end].strip()[:200]
    return " ".join(text.split())[:200]


def _error_text(errors: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"{e.get('FieldName')}: {e.get('Message')}" if e.get("FieldName") else str(e.get("Message"))
        for e in errors
    )


class KingdeeClient:
    """Calls BatchSave and ExecuteBillQuery on a lane, translating failures at this boundary."""

    def __init__(self, settings: KingdeeSettings, metrics: LoaderMetrics) -> None:
        self._s = settings
        self._metrics = metrics
        self._base = settings.server_url.rstrip("/")

    def _headers(self, service: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept-Charset": "utf-8"}
        if self._s.auth_mode == "signature":
            path = httpx.URL(f"{self._base}/{service}.common.kdsvc").path
            headers.update(
                signature_headers(
                    path,
                    acct_id=self._s.acct_id,
                    username=self._s.username,
                    app_id=self._s.app_id.get_secret_value(),
                    app_secret=self._s.app_secret.get_secret_value(),
                    lcid=self._s.lcid,
                    org_num=self._s.org_num,
                    timestamp=str(int(time.time())),
                )
            )
        return headers

    async def _post(self, lane: Lane, name: str, body: dict[str, Any] | Sequence[bytes]) -> Any:
        """One HTTP call; raises TransientError for transport failures, 5xx, response_error."""
        service = SERVICES[name]
        headers = self._headers(service)
        if lane.session_id:
            headers["kdservice-sessionid"] = lane.session_id
        content: bytes | AsyncIterator[bytes]
        if isinstance(body, dict):  # codec.dumps: a Decimal goes out with its exact digits
            content = dumps(body)
        else:  # already encoded, in pieces: written as they are (an attachment chunk)
            headers["Content-Length"] = str(sum(len(part) for part in body))
            content = _pieces(body)
        started = time.monotonic()
        try:
            response = await lane.http.post(
                f"{self._base}/{service}.common.kdsvc", content=content, headers=headers
            )
        except httpx.TimeoutException as exc:
            self._metrics.kingdee_error(name, "timeout")
            raise TransientError(f"Kingdee {name} timed out", code="kingdee_timeout") from exc
        except httpx.TransportError as exc:
            self._metrics.kingdee_error(name, "connection")
            raise TransientError(
                f"Kingdee {name} connection failed: {type(exc).__name__}", code="kingdee_connection"
            ) from exc
        finally:
            self._metrics.kingdee_latency.labels(name).observe(time.monotonic() - started)
        sid = response.cookies.get("kdservice-sessionid")
        if sid:
            lane.session_id = sid
        return self._decode(name, response)

    def _decode(self, name: str, response: httpx.Response) -> Any:
        if response.status_code not in (200, 206):
            self._metrics.kingdee_error(name, "http_5xx" if response.status_code >= 500 else "http")
            raise TransientError(
                f"Kingdee {name} answered HTTP {response.status_code}",
                code=f"kingdee_http_{response.status_code}",
            )
        text = response.text
        if not text.strip():
            # §0.3: the outcome is unknown; the sink asks Kingdee before anything is sent again
            self._metrics.kingdee_error(name, "empty")
            raise TransientError(f"Kingdee {name} answered an empty body", code="kingdee_empty")
        if text.lstrip()[:1] == "<":  # by the body: a header could lie either way
            self._metrics.kingdee_error(name, "html")
            raise TransientError(
                f"Kingdee {name} answered an HTML page (IIS): {_html_title(text)}",
                code="kingdee_html",
            )
        if text.startswith("response_error:"):
            self._metrics.kingdee_error(name, "response_error")
            raise TransientError(
                f"Kingdee {name} server exception: {text[len('response_error:') :][:300]}",
                code="kingdee_response_error",
            )
        try:
            payload = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            self._metrics.kingdee_error(name, "bad_json")
            raise TransientError(f"Kingdee {name} sent non-JSON", code="kingdee_bad_json") from exc
        status = _response_status(payload)
        if status is not None and not status.get("IsSuccess"):
            self._raise_unless_the_records(name, status)
        return payload

    def _raise_unless_the_records(self, name: str, status: dict[str, Any]) -> None:
        """A failed answer of any service: raise unless its MsgCode blames the data (§3.3)."""
        code = _msgcode(status)
        self._metrics.kingdee_error(name, f"msgcode_{code}")
        message = _error_text(status.get("Errors") or [])
        if code == 1:  # any text: messages are localised (§3.4); a re-login tells which it is
            raise SessionLostError(f"Kingdee {name}: {message}", code="kingdee_session_lost")
        if code in TRANSIENT_MSGCODES:  # even naming a row: a lock or a limit is no data fault
            raise TransientError(
                f"Kingdee {name} MsgCode {code}: {message}", code=f"kingdee_msgcode_{code}"
            )
        if code not in CONFIG_MSGCODES:
            return
        raise self._config_error(
            f"Kingdee refuses {name} (MsgCode {code}): {message}; check the integration user's "
            "permissions and licence in Kingdee (DINGDEE_KINGDEE__USERNAME)",
            code=f"kingdee_msgcode_{code}",
        )

    def _config_error(self, message: str, code: str) -> KingdeeConfigError:
        return KingdeeConfigError(message, code=code, retry_after=self._s.refused_retry_seconds)

    async def login(self, lane: Lane) -> None:
        """Open a session on ``lane``: ValidateUser in session mode; signature mode needs none.

        Raises:
            KingdeeConfigError: Kingdee refused the user, password or data center (§1.2).
            TransientError: the call itself failed.
        """
        lane.forget_session()
        if self._s.auth_mode == "signature":
            return
        password = self._s.password.get_secret_value() if self._s.password else ""
        body = {
            "acctID": self._s.acct_id,
            "username": self._s.username,
            "password": password,
            "lcid": self._s.lcid,
        }
        result = await self._post(lane, "validateuser", body)
        if not isinstance(result, dict) or "LoginResultType" not in result:
            raise TransientError(
                "Kingdee ValidateUser answer has no LoginResultType", code="kingdee_bad_answer"
            )
        kind = result.get("LoginResultType")
        if kind != 1:
            self._metrics.kingdee_error("validateuser", "refused")
            named = LOGIN_RESULTS.get(kind, str(kind)) if isinstance(kind, int) else str(kind)
            raise self._config_error(
                f"Kingdee login refused ({named}): {result.get('Message')}; check "
                "DINGDEE_KINGDEE__ACCT_ID, __USERNAME and __PASSWORD, and that the user is not "
                "locked in Kingdee",
                code="kingdee_auth",
            )
        lane.session_id = str(result.get("KDSVCSessionId") or "") or lane.session_id

    async def call(self, lane: Lane, name: str, body: dict[str, Any] | Sequence[bytes]) -> Any:
        """A business call; on session loss log in again and resend exactly once.

        ``body`` is the JSON object, or its encoding already made, in pieces (sent unjoined).

        The resend is part of the call, not a retry: its cause is known and cured before it (a
        new session), it waits for nothing and spends no retry budget; a second loss means
        something else (below). Retries of transient failures are the sink's
        (``retry_transient``).

        Raises:
            TransientError: transport failure, 5xx, ``response_error:``, or the session was lost
                again right after the re-login.
            KingdeeConfigError: credentials, permission or licence refused.
        """
        if self._s.auth_mode == "session" and not lane.session_id:
            await self.login(lane)
        try:
            return await self._post(lane, name, body)
        except SessionLostError as exc:
            log.info("loader.kingdee.relogin", lane=lane.index, service=name, reason=exc.message)
            self._metrics.relogins.inc()
            await self.login(lane)
        try:
            return await self._post(lane, name, body)
        except SessionLostError as exc:
            lane.forget_session()
            if SESSION_LOST in exc.message or self._s.auth_mode == "session":
                raise  # a fresh session lost at once (§1.5, single report): try again later
            # signature mode: a refused signature answers MsgCode 1 in other words (§1.1, §8.2)
            raise self._config_error(
                f"Kingdee rejected the credentials: {exc.message}; check "
                "DINGDEE_KINGDEE__APP_ID, __APP_SECRET, __ACCT_ID and __USERNAME",
                code="kingdee_auth",
            ) from exc

    async def batch_save(
        self, lane: Lane, form_id: str, options: dict[str, Any], models: list[dict[str, Any]]
    ) -> dict[int, RowResult]:
        """BatchSave ``models``; the outcome of every package Kingdee reported, by ``DIndex``.

        Packages missing from the answer were neither saved nor rejected (all-or-nothing mode).
        """
        data = {**options, "Model": models}
        payload = await self.call(lane, "batchsave", {"formid": form_id, "data": data})
        status = _response_status(payload)
        if status is None:
            raise TransientError(
                "Kingdee BatchSave answer has no ResponseStatus", code="kingdee_bad_answer"
            )
        return _rows(status, len(models))

    async def existing(
        self, lane: Lane, form_id: str, number_field: str, numbers: list[str]
    ) -> dict[str, int]:
        """Which of ``numbers`` already exist in ``form_id``: number → internal id."""
        pk = self._s.primary_key(form_id)
        quoted = ",".join("'" + n.replace("'", "''") + "'" for n in numbers)
        data = {
            "FormId": form_id,
            "FieldKeys": f"{pk},{number_field}",
            "FilterString": f"{number_field} in ({quoted})",
            "OrderString": "",
            "TopRowCount": 0,
            "StartRow": 0,
            "Limit": len(numbers) * 2,
        }
        payload = await self.call(lane, "executebillquery", {"data": data})
        if _response_status(payload) is not None:
            status = _response_status(payload) or {}
            raise TransientError(
                f"Kingdee ExecuteBillQuery failed: {_error_text(status.get('Errors') or [])}",
                code="kingdee_query_failed",
            )
        return {
            str(row[1]): int(row[0]) for row in payload if isinstance(row, list) and len(row) == 2
        }


def _rows(status: dict[str, Any], count: int) -> dict[int, RowResult]:
    rows: dict[int, RowResult] = {}
    for entity in status.get("SuccessEntitys") or []:
        rows[int(entity.get("DIndex", 0))] = RowResult(
            RowKind.SAVED, int(entity["Id"]) if entity.get("Id") else None, entity.get("Number")
        )
    errors: dict[int, list[dict[str, Any]]] = {}
    for error in status.get("Errors") or []:
        errors.setdefault(int(error.get("DIndex", 0)), []).append(error)
    if not status.get("IsSuccess") and not errors and not rows:
        # a failure that names no package (wrong form id, bad parameters) rejects them all
        whole = [{"FieldName": None, "Message": f"MsgCode {status.get('MsgCode')}"}]
        errors = dict.fromkeys(range(count), whole)
    for dindex, errs in errors.items():
        if any(str(e.get("Message", "")).startswith(DUPLICATE_PREFIX) for e in errs):
            rows[dindex] = RowResult(RowKind.EXISTS, message=_error_text(errs))
        elif dindex not in rows:
            field = next((e.get("FieldName") for e in errs if e.get("FieldName")), None)
            rows[dindex] = RowResult(RowKind.REJECTED, message=_error_text(errs), field=field)
    return rows


async def _pieces(parts: Sequence[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
