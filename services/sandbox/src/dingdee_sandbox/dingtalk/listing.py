"""listids semantics shared by both hosts: validation, creation-time filter, offset paging.

Contract §2.1, §4.1.3, §7.4: size ≤ 20; a window of at most 120 days; a start at most 365 days
old (5 years for premium orgs); only a start given → it must be within 120 days; at most 10
originators; at most 10 000 ids per query; ``next_cursor`` only while more ids exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dingdee_sandbox.dingtalk.state import DAY_MS, State

__all__ = ["ID_CAP", "CapError", "ListError", "ListQuery", "page", "parse_int", "validate"]

ID_CAP = 10_000
MESSAGES = {
    "invalidProcessCode": "审批模板processCode不能为空",
    "invalidInstanceListIdsStartTime": "获取审批实例ID列表，审批实例开始时间不能为空",
    "invalidNextToken": "获取审批实例ID列表，分页查询的游标不能为空",
    "invalidMaxResults": "获取审批实例ID列表，分页参数非法，每页大小，最多传20。",
    "invalidEndTime": (
        "获取审批实例ID列表，审批实例结束时间不能小于开始时间；且查询时间范围不能超过120天。"
    ),
    "invalidUserIds": "获取审批实例ID列表，发起userid列表参数非法，最大列表长度为10。",
}


class ListError(ValueError):
    """An invalid listids request; ``code`` is the v1.0 error code naming the rule."""

    def __init__(self, code: str) -> None:
        super().__init__(MESSAGES[code])
        self.code = code


@dataclass(frozen=True)
class ListQuery:
    """A validated listids request."""

    process_code: str
    start: int
    end: int
    cursor: int
    size: int
    userids: list[str]
    statuses: list[str]


def parse_int(value: Any, code: str) -> int | None:
    """``value`` as an int (numbers or numeric strings); None when absent.

    Raises:
        ListError: ``value`` is present but not an integer.
    """
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ListError(code) from None


def validate(
    state: State,
    process_code: Any,
    start: int | None,
    end: int | None,
    cursor: int,
    size: int,
    userids: list[str],
    statuses: list[str] | None = None,
) -> ListQuery:
    """Check a listids request against the contract's rules, in the order DingTalk names them.

    Raises:
        ListError: the first rule broken.
    """
    now = state.now_ms()
    if not process_code:
        raise ListError("invalidProcessCode")
    if start is None:
        raise ListError("invalidInstanceListIdsStartTime")
    if size > 20 or size < 1 or cursor < 0:
        raise ListError("invalidMaxResults")
    if len(userids) > 10:
        raise ListError("invalidUserIds")
    lookback = (5 * 365 if state.faults.premium else 365) * DAY_MS
    if end is None:
        if start < now - 120 * DAY_MS:
            raise ListError("invalidEndTime")
        end = now
    too_wide = end - start > 120 * DAY_MS or start < now - lookback
    if end < start or too_wide or (state.faults.reject_future_end and end > now):
        raise ListError("invalidEndTime")
    return ListQuery(str(process_code), start, end, cursor, size, userids, statuses or [])


class CapError(ValueError):
    """A page past the listing cap was asked for (knob ``listing_cap_error``)."""


def page(state: State, query: ListQuery) -> tuple[list[str], int | None]:
    """One page of ids and the next cursor (None on the last page); at most 10 000 per query.

    Raises:
        CapError: ``listing_cap_error`` is on and the page starts past the cap of a query that
            holds more ids than it (DingTalk's behaviour there is UNCONFIRMED, dingtalk.md
            lines 704–705).
    """
    ids = state.listed(query.process_code, query.start, query.end, query.userids)
    if query.statuses:
        ids = [i for i in ids if state.instances[i].status in query.statuses]
    cap = min(ID_CAP, state.faults.listing_cap)
    over = len(ids) > cap and state.faults.listing_cap_error
    if over and query.cursor >= cap:
        raise CapError(query.cursor)
    ids = ids[:cap]
    chunk = ids[query.cursor : query.cursor + query.size]
    more = query.cursor + query.size < len(ids) or over
    return chunk, (query.cursor + query.size if more else None)
