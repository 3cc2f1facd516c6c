"""Jinja2 rendering with autoescape on: every record value is hostile input and is escaped."""

from __future__ import annotations

from typing import Any

import jinja2
from aiohttp import web

from dingdee_ops.console.security import Signer, identity
from dingdee_ops.console.state import ConsoleState
from dingdee_ops.dlq.records import DeadLetter

__all__ = ["ADVICE", "Renderer", "advice"]

ADVICE = {
    "permanent": (
        "数据或映射有误：在钉钉修正审批或修正 flows.yaml 后重放 · "
        "the data or the mapping is wrong: fix the approval in DingTalk or flows.yaml, then replay"
    ),
    "poison": (
        "消息无法解码：交给开发排查，不要重放 · the record cannot be decoded: hand it to the "
        "developers, do not replay it"
    ),
    "exhausted": (
        "重试用尽（对方长时间不可用）：确认对方恢复后重放 · retries ran out: replay once the "
        "other side works again"
    ),
}


def advice(letter: DeadLetter) -> str:
    """What to do about a dead letter, by its error class (docs/runbooks.md)."""
    if letter.error_type.startswith("linked_"):
        return "需要财务决定：手工调整或冲销金蝶单据后丢弃此死信 · a finance decision is needed"
    return ADVICE.get(letter.error_class, "见 docs/runbooks.md · see docs/runbooks.md")


class Renderer:
    """Renders a page template with what every page shows (user, CSRF token, data time)."""

    def __init__(self, state: ConsoleState, signer: Signer) -> None:
        self._state = state
        self._signer = signer
        self._env = jinja2.Environment(
            loader=jinja2.PackageLoader("dingdee_ops.console", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self._env.globals["advice"] = advice

    def page(self, request: web.Request, template: str, **context: Any) -> web.Response:
        who = identity(request)
        journal = self._state.journal
        text = self._env.get_template(template).render(
            who=who,
            csrf=self._signer.csrf(who),
            read_at=journal.read_at if journal is not None else None,
            journal_error=self._state.journal_error,
            **context,
        )
        return web.Response(text=text, content_type="text/html", charset="utf-8")
