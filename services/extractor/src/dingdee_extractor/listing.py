"""A flow poller's DingTalk calls: metered, retried ``listids`` paging, and whom to blame.

Every attempt of a call is metered (the month's quota, :attr:`FlowState.calls`); a listing that
outlives its retries means DingTalk is unavailable, a ``get`` that does is judged by
:meth:`FlowListing._blame`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from dingdee_common.errors import PermanentError
from dingdee_common.observability.logging import get_logger
from dingdee_common.quota import CallKind, count_call
from dingdee_common.retry import RetryExhaustedError, retry_transient
from dingdee_extractor.dingtalk.client import DingTalkUnavailableError, IdPage
from dingdee_extractor.flowstate import FlowState

__all__ = ["MAX_PAGE", "FlowListing"]

log = get_logger(__name__)

MAX_PAGE = 20  # the largest listids page (contract §2.1)


class FlowListing(FlowState):
    """The poller's calls to DingTalk: paged listing with the cap's halving, metering, blame."""

    async def _list(self, lo: int, hi: int) -> list[str]:
        """Every id created in ``[lo, hi]``, paged to the end; halves a window over the cap.

        DingTalk pages through at most ``listing_cap`` ids of one query (§2.1 rule 3). What it
        does there is undocumented: it may stop listing (the silent cap) or refuse the page that
        reaches past it; either way the window is halved until each half fits.
        """
        cap = self._poll.listing_cap
        ids: list[str] = []
        cursor = 0
        refused = False
        while True:
            try:
                page: IdPage = await self._call(
                    "list", functools.partial(self._listids, lo, hi, cursor)
                )
            except PermanentError as exc:
                if cursor < cap - MAX_PAGE:
                    raise
                refused = True
                log.warning(
                    "extractor.listing.cap_refused",
                    flow=self.source.flow,
                    window_ms=[lo, hi],
                    cursor=cursor,
                    error=str(exc),
                )
                break
            ids.extend(page.ids)
            if page.next_cursor is None or page.next_cursor <= cursor:
                break
            cursor = page.next_cursor
        if (refused or len(ids) >= cap) and hi - lo > 1000:
            mid = lo + (hi - lo) // 2
            return [*await self._list(lo, mid), *await self._list(mid + 1, hi)]
        return list(dict.fromkeys(ids))

    async def _listids(self, lo: int, hi: int, cursor: int) -> IdPage:
        return await self._client.listids(self.source.app, self.source.process_code, lo, hi, cursor)

    async def _call(self, kind: CallKind, call: Callable[[], Awaitable[Any]]) -> Any:
        """``call`` with retries; every attempt is a metered call and is counted.

        Raises:
            DingTalkUnavailableError: a listing outlived its retry budget (DingTalk is down).
            RetryExhaustedError: a ``get`` did; :meth:`_fetch_one` decides whose fault it is.
        """

        async def counted() -> Any:
            self.calls += 1
            self._usage = count_call(self._usage, self.source.app, kind, self._clock())
            return await call()

        try:
            return await retry_transient(counted, self._retry)
        except RetryExhaustedError as exc:
            if kind == "get":
                raise
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: RetryExhaustedError) -> DingTalkUnavailableError:
        return DingTalkUnavailableError(
            f"DingTalk app {self.source.app!r} unavailable: {exc.last.message}",
            retry_after=exc.last.retry_after,
            code=exc.last.error_type,
        )

    async def _blame(self, exc: RetryExhaustedError, failed_at: float) -> None:
        """A ``get`` outlived its retries: return if the instance is at fault, else raise.

        DingTalk answered another call of the app after this one first failed, or answers a
        one-page listing of this flow now: the failure is this instance's. Otherwise DingTalk
        itself is unavailable, and :class:`DingTalkUnavailableError` stops the cycle before a
        failure is counted against any instance.
        """
        if self._client.answered_since(self.source.app, failed_at):
            return
        end = self._clock() - int(self._poll.settle_seconds * 1000)  # a legal, settled window
        try:
            await self._call("list", functools.partial(self._listids, end - 1000, end, 0))
        except PermanentError:
            return  # DingTalk answers (it refuses the listing): this is no outage
        if not self._client.answered_since(self.source.app, failed_at):
            raise self._unavailable(exc)
