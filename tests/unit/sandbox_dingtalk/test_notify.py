"""The sandbox's work-notification call (``asyncsend_v2``) and its view: parameters checked,
a task id per call, the same content to the same employee delivered once a day (the page's
limit: the call still answers success)."""

from __future__ import annotations

from typing import Any

from dingdee_sandbox.demo_org import DEMO_APP
from dingdee_sandbox.dingtalk.state import State
from tests.unit.sandbox_dingtalk.harness import Sandbox, running

PATH = "/topapi/message/corpconversation/asyncsend_v2"


async def send(box: Sandbox, body: dict[str, Any]) -> Any:
    token = await box.token()
    status, answer = await box.call("POST", PATH, params={"access_token": token}, json=body)
    assert status == 200, answer
    return answer


def text(content: str, userids: str = "u1,u2", agent: int = DEMO_APP.agent_id) -> dict[str, Any]:
    return {
        "agent_id": agent,
        "userid_list": userids,
        "msg": {"msgtype": "text", "text": {"content": content}},
    }


async def test_send_deliver_once_a_day_and_list() -> None:
    async with running(State()) as box:
        first = await send(box, text("已生成金蝶费用报销单 BYJ1"))
        assert first["errcode"] == 0 and isinstance(first["task_id"], int)
        again = await send(box, text("已生成金蝶费用报销单 BYJ1", "u1"))
        assert again["errcode"] == 0 and again["task_id"] > first["task_id"]
        other = await send(box, text("已生成金蝶费用报销单 BYJ2", "u1"))
        assert other["errcode"] == 0
        listed = (await box.control("GET", "notifications", params={"userid": "u1"}))[
            "notifications"
        ]
        assert [(n["content"], n["delivered"]) for n in listed] == [
            ("已生成金蝶费用报销单 BYJ1", True),
            ("已生成金蝶费用报销单 BYJ1", False),
            ("已生成金蝶费用报销单 BYJ2", True),
        ]
        assert listed[1]["dropped"].startswith("143106")
        everyone = (await box.control("GET", "notifications"))["notifications"]
        assert {n["userid"] for n in everyone} == {"u1", "u2"}


async def test_bad_parameters_and_a_foreign_agent_are_refused() -> None:
    async with running(State()) as box:
        for body in (
            text("x", agent=DEMO_APP.agent_id + 1),
            text("x", userids=""),
            {"agent_id": DEMO_APP.agent_id, "userid_list": "u1"},
            {"agent_id": "abc", "userid_list": "u1", "msg": {"msgtype": "text"}},
        ):
            answer = await send(box, body)
            assert answer["errcode"] == 40035, (body, answer)
        assert (await box.control("GET", "notifications"))["notifications"] == []
