"""Minimal read-only DingTalk and Kingdee readers for reconciliation (contracts/*.md).

Reconciliation only needs two questions answered — "which instances of this template were started
in the period, and what do they look like?" (``listids`` + ``get``) and "which of these bill numbers
exist in Kingdee?" (``ExecuteBillQuery``) — so these readers stay small and never write.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from dingdee_common.errors import FatalError, TransientError

__all__ = ["DingTalkReader", "KingdeeReader"]

_PAGE = 20
_WINDOW_MS = 100 * 24 * 3600 * 1000  # listids accepts at most 120 days per query
_QUERY_CHUNK = 200
_THROTTLED = {88, 90002, 90018, -1}


class DingTalkReader:
    """``gettoken`` → ``listids`` (paged, in ≤ 100-day windows) → ``get`` for one app."""

    def __init__(self, client: httpx.AsyncClient, app_key: str, app_secret: str) -> None:
        self._http = client
        self._app_key = app_key
        self._app_secret = app_secret
        self._token: str | None = None

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self._token is None:
            response = await self._http.get(
                "/gettoken", params={"appkey": self._app_key, "appsecret": self._app_secret}
            )
            data = response.json()
            if data.get("errcode") != 0:
                raise FatalError(f"DingTalk gettoken failed: {data.get('errmsg')}", code="auth")
            self._token = str(data["access_token"])
        response = await self._http.post(path, params={"access_token": self._token}, json=body)
        data = response.json()
        code = data.get("errcode", 0)
        if code in _THROTTLED or response.status_code >= 500:
            raise TransientError(f"DingTalk {path} busy: {data.get('errmsg')}", code=str(code))
        if code != 0:
            raise FatalError(
                f"DingTalk {path} errcode {code}: {data.get('errmsg')}", code=str(code)
            )
        return dict(data)

    async def instance_ids(self, process_code: str, start_ms: int, end_ms: int) -> list[str]:
        """Ids of the instances *started* in ``[start_ms, end_ms)``, without duplicates."""
        seen: dict[str, None] = {}
        window = start_ms
        while window < end_ms:
            upper = min(window + _WINDOW_MS, end_ms)
            cursor: int | None = 0
            while cursor is not None:
                body = {
                    "process_code": process_code,
                    "start_time": window,
                    "end_time": upper - 1,
                    "size": _PAGE,
                    "cursor": cursor,
                }
                result = (await self._call("/topapi/processinstance/listids", body))["result"]
                seen.update(dict.fromkeys(result.get("list") or []))
                cursor = result.get("next_cursor") or None
            window = upper
        return list(seen)

    async def instances(
        self, process_code: str, start_ms: int, end_ms: int
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """``(process_instance_id, process_instance)`` for every instance of the period."""
        for instance_id in await self.instance_ids(process_code, start_ms, end_ms):
            body = {"process_instance_id": instance_id}
            data = await self._call("/topapi/processinstance/get", body)
            yield instance_id, dict(data["process_instance"])


class KingdeeReader:
    """``ExecuteBillQuery`` by bill number in chunks, through the loader's Kingdee client.

    Reusing the loader's client means the same authentication (signature or session mode, from
    the same ``DINGDEE_KINGDEE__*`` variables) and the same translation of Kingdee's answers.
    """

    def __init__(self, kingdee: dict[str, Any]) -> None:
        from prometheus_client import CollectorRegistry

        from dingdee_loader.kingdee.client import KingdeeClient, Lane
        from dingdee_loader.metrics import LoaderMetrics
        from dingdee_loader.settings import KingdeeSettings

        settings = KingdeeSettings.model_validate(kingdee)
        self._client = KingdeeClient(settings, LoaderMetrics.create(CollectorRegistry()))
        self._lane = Lane(0, settings)

    async def aclose(self) -> None:
        await self._lane.aclose()

    async def count_numbers(
        self, form_id: str, number_field: str, keys: Sequence[str]
    ) -> Counter[str]:
        """How many bills of ``form_id`` carry each of ``keys`` in ``number_field``.

        Raises:
            FatalError: credentials rejected, or Kingdee refused the query (unknown form/field).
            TransientError: Kingdee unreachable.
        """
        found: Counter[str] = Counter()
        unique = sorted(set(keys))
        for first in range(0, len(unique), _QUERY_CHUNK):
            chunk = unique[first : first + _QUERY_CHUNK]
            quoted = ",".join("'" + k.replace("'", "''") + "'" for k in chunk)
            data = {
                "FormId": form_id,
                "FieldKeys": number_field,
                "FilterString": f"{number_field} in ({quoted})",
                "OrderString": "",
                "TopRowCount": 0,
                "StartRow": 0,
                "Limit": len(chunk) * 4,
            }
            rows = await self._client.call(self._lane, "executebillquery", {"data": data})
            _raise_on_query_error(rows)
            found.update(str(row[0]) for row in rows)
        return found


def _raise_on_query_error(rows: Any) -> None:
    if isinstance(rows, list) and rows and rows[0] and isinstance(rows[0][0], dict):
        status = rows[0][0].get("Result", {}).get("ResponseStatus", {})
        errors = "; ".join(e.get("Message", "") for e in status.get("Errors", []))
        raise FatalError(
            f"Kingdee ExecuteBillQuery failed: {errors or status}", code="kingdee_query"
        )
    if not isinstance(rows, list):
        raise FatalError(
            f"Kingdee ExecuteBillQuery answered {str(rows)[:200]}", code="kingdee_query"
        )
