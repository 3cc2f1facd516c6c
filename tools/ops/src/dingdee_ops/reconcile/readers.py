"""Minimal read-only DingTalk and Kingdee readers for reconciliation (contracts/*.md).

Reconciliation only needs two questions answered — "which instances of this template were started
in the period, and what do they look like?" (``listids`` + ``get``) and "which of these bill numbers
exist in Kingdee?" (``ExecuteBillQuery``) — so these readers stay small and never write.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Sequence
from functools import partial
from typing import Any

from prometheus_client import CollectorRegistry

from dingdee_common.errors import FatalError
from dingdee_common.retry import retry_transient
from dingdee_common.settings import RetrySettings
from dingdee_extractor.dingtalk.client import DingTalkClient
from dingdee_extractor.metrics import ExtractorMetrics
from dingdee_extractor.settings import DingTalkSettings
from dingdee_loader.kingdee.client import KingdeeClient, KingdeeConfigError, Lane
from dingdee_loader.metrics import LoaderMetrics
from dingdee_loader.settings import KingdeeSettings

__all__ = ["DingTalkReader", "KingdeeReader"]

_WINDOW_MS = 100 * 24 * 3600 * 1000  # listids accepts at most 120 days per query
_QUERY_CHUNK = 200
_PAGE = 2000  # rows per ExecuteBillQuery page: the original maximum (contract §4.1)


class DingTalkReader:
    """``listids`` (paged, in ≤ 100-day windows) then ``get``, through the extractor's client.

    Reusing the extractor's client means the same token cache, per-(app, API) token buckets and
    errcode translation as production polling; transient errors are retried with backoff.
    """

    def __init__(self, settings: DingTalkSettings, app: str) -> None:
        self._client = DingTalkClient(settings, ExtractorMetrics.create(CollectorRegistry()))
        self._app = app
        self._retry = RetrySettings(max_attempts=6, deadline_seconds=120)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def instance_ids(self, process_code: str, start_ms: int, end_ms: int) -> list[str]:
        """Ids of the instances *started* in ``[start_ms, end_ms)``, without duplicates."""
        seen: dict[str, None] = {}
        window = start_ms
        while window < end_ms:
            upper = min(window + _WINDOW_MS, end_ms)
            cursor: int | None = 0
            while cursor is not None:
                page = await retry_transient(
                    partial(
                        self._client.listids, self._app, process_code, window, upper - 1, cursor
                    ),
                    self._retry,
                )
                seen.update(dict.fromkeys(page.ids))
                cursor = page.next_cursor
            window = upper
        return list(seen)

    async def instances(
        self, process_code: str, start_ms: int, end_ms: int
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """``(process_instance_id, process_instance)`` for every instance of the period."""
        for instance_id in await self.instance_ids(process_code, start_ms, end_ms):
            get = partial(self._client.get, self._app, instance_id)
            yield instance_id, dict(await retry_transient(get, self._retry))


class KingdeeReader:
    """``ExecuteBillQuery`` by bill number in chunks, through the loader's Kingdee client.

    Reusing the loader's client means the same authentication (signature or session mode, from
    the same ``DINGDEE_KINGDEE__*`` variables) and the same translation of Kingdee's answers.
    """

    def __init__(self, settings: KingdeeSettings) -> None:
        self._client = KingdeeClient(settings, LoaderMetrics.create(CollectorRegistry()))
        self._lane = Lane(0, settings)

    async def aclose(self) -> None:
        await self._lane.aclose()

    async def _query(self, data: dict[str, Any]) -> Any:
        """One ExecuteBillQuery; a refused login, permission or licence ends the run (Fatal)."""
        try:
            rows = await self._client.call(self._lane, "executebillquery", {"data": data})
        except KingdeeConfigError as exc:  # the loader waits on it; a one-shot command stops
            raise FatalError(exc.message, code=exc.error_type) from exc
        _raise_on_query_error(rows)
        return rows

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
            rows = await self._query(data)
            found.update(str(row[0]) for row in rows)
        return found

    async def numbers_like(self, form_id: str, number_field: str, like: str) -> Counter[str]:
        """How many bills of ``form_id`` carry each number matching the SQL ``LIKE`` ``like``.

        Paged by ``StartRow``/``Limit`` (contract §4.1).

        Raises:
            FatalError: credentials rejected, or Kingdee refused the query.
            TransientError: Kingdee unreachable.
        """
        found: Counter[str] = Counter()
        start = 0
        while True:
            data = {
                "FormId": form_id,
                "FieldKeys": number_field,
                "FilterString": f"{number_field} like '{like}'",
                "OrderString": f"{number_field} ASC",
                "TopRowCount": 0,
                "StartRow": start,
                "Limit": _PAGE,
            }
            rows = await self._query(data)
            found.update(str(row[0]) for row in rows)
            if len(rows) < _PAGE:
                return found
            start += len(rows)


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
