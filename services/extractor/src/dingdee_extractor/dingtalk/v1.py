"""The v1.0-host calls of the follow-ups (issue #18): file download URLs and approval comments.

Contract ``contracts/dingtalk.md`` §9.3.1 (``urls/download``: permission
``Workflow.Instance.Write``, URL valid 15 minutes, errors HTTP 400 ``{"code","message"}``) and
§9.4.1 (``comments``: ≤ 1 024 characters, not idempotent). Calls pace through the old-host
client's token bucket per (app, API) (:meth:`DingTalkClient.pace`); the v1.0 token is the
app's ``/v1.0/oauth2/accessToken`` (§1.2). Answers become the taxonomy here:

* transport failures, 5xx, ``systemError``/``internalError``/``hsfIntegrationErrorCspace*``,
  throttling (``Throttling.*``, 429) → :class:`TransientError` (wait, never a dead letter);
* 401 / an invalid token → refreshed once, then transient;
* 403 (the app lacks ``Workflow.Instance.Write``) → :class:`TransientError` with the setting to
  fix (a configuration refusal: wait, not any record's fault);
* any other 400 (``userNotExist``, ``invalidFileId``, ``processInstNotExist``, ``noPermission``,
  ``aflowProcessInstCanNotBeExecuted`` …) → :class:`PermanentError` about this approval.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson

from dingdee_common.errors import PermanentError, TransientError
from dingdee_extractor.dingtalk.client import DingTalkClient
from dingdee_extractor.metrics import ExtractorMetrics
from dingdee_extractor.settings import DingTalkSettings

__all__ = ["COMMENT_API", "DOWNLOAD_API", "V1Client"]

DOWNLOAD_API, COMMENT_API = "file_url_v1", "comment_v1"
_DOWNLOAD = "/v1.0/workflow/processInstances/spaces/files/urls/download"
_COMMENT = "/v1.0/workflow/processInstances/comments"
_TRANSIENT = ("systemError", "internalError", "hsfIntegrationErrorCspace", "Throttling")
URL_TTL_MS = 15 * 60 * 1000  # §9.3.1: "valid 15 minutes"


class V1Client:
    """One per extractor; tokens per app, pacing and metrics shared with ``DingTalkClient``."""

    def __init__(
        self,
        settings: DingTalkSettings,
        base_url: str,
        paced: DingTalkClient,
        metrics: ExtractorMetrics,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._settings = settings
        self._paced = paced
        self._metrics = metrics
        self._http = http or httpx.AsyncClient(
            base_url=base_url.rstrip("/"), timeout=settings.timeout_seconds
        )
        self._tokens: dict[str, tuple[str, float]] = {}

    async def aclose(self) -> None:
        await self._http.aclose()

    async def download_url(self, app: str, instance_id: str, file_id: str) -> tuple[str, int]:
        """A fresh download URL of one file and when it expires (epoch ms)."""
        # withCommentAttatchment (sic): always sent, form files work with it too (§9.3.1)
        body = {"processInstanceId": instance_id, "fileId": file_id, "withCommentAttatchment": True}
        issued = int(time.time() * 1000)
        data = await self._call(app, DOWNLOAD_API, _DOWNLOAD, body)
        result = data.get("result") if isinstance(data.get("result"), dict) else {}
        uri = result.get("downloadUri") if result else None
        if not isinstance(uri, str) or not uri:
            raise TransientError(f"DingTalk {DOWNLOAD_API}: answer without downloadUri")
        return uri, issued + URL_TTL_MS

    async def comment(self, app: str, instance_id: str, text: str, user_id: str) -> None:
        """Add one comment to the approval (§9.4.1). Not idempotent: callers dedupe."""
        body = {"processInstanceId": instance_id, "text": text, "commentUserId": user_id}
        await self._call(app, COMMENT_API, _COMMENT, body)

    async def _token(self, app: str, *, fresh: bool = False) -> str:
        cached = self._tokens.get(app)
        if cached and not fresh and time.monotonic() < cached[1] - 300:
            return cached[0]
        creds = self._settings.apps[app]
        body = {"appKey": creds.app_key, "appSecret": creds.app_secret.get_secret_value()}
        data = await self._send(app, "token_v1", "/v1.0/oauth2/accessToken", body, None)
        token = data.get("accessToken")
        if not isinstance(token, str):
            raise TransientError(f"DingTalk v1.0 accessToken for app {app!r}: no token")
        self._tokens[app] = (token, time.monotonic() + float(data.get("expireIn") or 7200))
        return token

    async def _call(self, app: str, api: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        await self._paced.pace(app, api)
        try:
            return await self._send(app, api, path, body, await self._token(app))
        except _TokenRejectedError:
            token = await self._token(app, fresh=True)
            try:
                return await self._send(app, api, path, body, token)
            except _TokenRejectedError:
                raise TransientError(f"DingTalk {api}: fresh v1.0 token rejected") from None

    async def _send(
        self, app: str, api: str, path: str, body: dict[str, Any], token: str | None
    ) -> dict[str, Any]:
        headers = {"x-acs-dingtalk-access-token": token} if token else {}
        started, label = time.monotonic(), "transport"
        try:
            response = await self._http.post(path, json=body, headers=headers)
            data = _json(response)
            label = "0" if response.status_code == 200 else str(data.get("code") or "http")
            return _interpret(api, response.status_code, data)
        except httpx.TimeoutException as exc:
            label = "timeout"
            raise TransientError(f"DingTalk {api}: timed out", code="timeout") from exc
        except httpx.TransportError as exc:
            raise TransientError(f"DingTalk {api}: {type(exc).__name__}", code=label) from exc
        finally:
            self._metrics.requests.labels(app, api, label).inc()
            self._metrics.request_duration.labels(api).observe(time.monotonic() - started)


class _TokenRejectedError(Exception):
    pass


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _interpret(api: str, status: int, data: dict[str, Any]) -> dict[str, Any]:
    code, message = str(data.get("code") or ""), str(data.get("message") or "")
    text = f"DingTalk {api}: HTTP {status} {code} {message}".strip()
    if status == 200:
        return data
    if status == 401 or "InvalidAuthentication" in code or "token" in code.lower():
        raise _TokenRejectedError(text)
    if status >= 500 or status == 429 or code.startswith(_TRANSIENT):
        raise TransientError(text, code=code or f"http_{status}")
    if status == 403:
        raise TransientError(
            text + "; grant the app the Workflow.Instance.Write permission "
            "(DingTalk developer console), the follow-ups wait meanwhile (DINGDEE_OUTAGE__*)",
            code="forbidden",
        )
    raise PermanentError(text, code=code or f"http_{status}")
