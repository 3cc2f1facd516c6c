"""``Writeback`` on fakes: the pending/done marks make the comment exactly once, also after a
kill between the POST and the ``done`` mark (DESIGN §11)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from dingdee_common import codec
from dingdee_common.contracts.v1 import BillOutcome, BillResult, SourceRef, WritebackMark
from dingdee_common.errors import FatalError, PermanentError, TransientError
from dingdee_common.followups import FollowupSpec, WritebackSpec
from dingdee_common.observability.followups import FollowupMetrics
from dingdee_common.settings import RetrySettings
from dingdee_extractor.writeback import Writeback

TEXT = "已生成金蝶费用报销单 BYJ1"
ROOT = Path(__file__).resolve().parents[3]


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> None:
        self.sent.append((topic, key, value))


class FakeV1:
    def __init__(self, fail: Exception | None = None, transient: int = 0) -> None:
        self.comments: list[tuple[str, str, str]] = []
        self.fail = fail
        self.transient = transient

    async def comment(self, app: str, pid: str, text: str, user: str) -> None:
        if self.transient:
            self.transient -= 1
            raise TransientError("busy")
        if self.fail:
            raise self.fail
        self.comments.append((pid, text, user))


class FakeClient:
    def __init__(self, remarks: list[str]) -> None:
        self.remarks = remarks
        self.gets = 0
        self.notified: list[tuple[int, str, str]] = []
        self.notify_fail: Exception | None = None

    async def notify(self, app: str, agent_id: int, userid: str, text: str) -> int:
        if self.notify_fail:
            raise self.notify_fail
        self.notified.append((agent_id, userid, text))
        return len(self.notified)

    async def get(self, app: str, pid: str) -> dict[str, Any]:
        self.gets += 1
        records = [{"operation_type": "ADD_REMARK", "remark": r} for r in self.remarks]
        return {"operation_records": [{"operation_type": "EXECUTE_TASK_NORMAL"}, *records]}


def spec(notify: str = "comment", user: str = "originator") -> FollowupSpec:
    return FollowupSpec(
        flow="petty-cash",
        app="main",
        form_id="ER_ExpReimbursement",
        writeback=WritebackSpec.model_validate(
            {"outcomes": ["saved", "dead_lettered"], "notify": notify, "comment_user": user}
        ),
    )


def result(outcome: BillOutcome = BillOutcome.SAVED) -> BillResult:
    return BillResult(
        flow="petty-cash",
        bill_key="BYJ1",
        form_id="ER_ExpReimbursement",
        outcome=outcome,
        number="BYJ1",
        message="FProposerID: 员工 EMP0099 不存在",
        source=SourceRef(process_instance_id="p1", originator_userid="u1"),
    )


def writeback(
    marks: dict[str, WritebackMark], v1: FakeV1, client: FakeClient
) -> tuple[Writeback, FakeProducer, list[str]]:
    producer, counted = FakeProducer(), list[str]()
    wb = Writeback(
        producer,
        "writeback.log",
        marks,
        v1,  # type: ignore[arg-type]
        client,  # type: ignore[arg-type]
        FollowupMetrics.create(CollectorRegistry()),
        RetrySettings(initial_backoff_seconds=0.001, max_backoff_seconds=0.001),
        counted.append,
        {"main": 7},
    )
    return wb, producer, counted


def states(producer: FakeProducer) -> list[str]:
    return [
        codec.decode_model(v, WritebackMark, supported_versions=frozenset({1})).state
        for _, _, v in producer.sent
    ]


async def test_pending_then_done_and_never_twice() -> None:
    v1, client = FakeV1(transient=2), FakeClient([])
    wb, producer, counted = writeback({}, v1, client)
    assert await wb.handle(spec(), result()) is None
    assert v1.comments == [("p1", TEXT, "u1")]
    assert states(producer) == ["pending", "done"]
    assert producer.sent[0][1] == b"p1:saved"
    assert counted == ["main"] * 3  # the two busy answers count too
    # an existing bill (a replay) is the same outcome: no second comment
    await wb.handle(spec(), result(BillOutcome.ALREADY_EXISTS))
    assert len(v1.comments) == 1 and client.gets == 0


async def test_a_pending_mark_whose_comment_exists_is_not_posted_again() -> None:
    pending = {"p1:saved": WritebackMark(process_instance_id="p1", outcome="saved",
                                          state="pending", text=TEXT, bill_key="BYJ1")}  # fmt: skip
    v1, client = FakeV1(), FakeClient([TEXT])
    wb, producer, _ = writeback(pending, v1, client)
    await wb.handle(spec(), result())
    assert v1.comments == [] and client.gets == 1
    assert states(producer) == ["done"]


async def test_a_pending_mark_without_the_comment_is_posted() -> None:
    pending = {"p1:saved": WritebackMark(process_instance_id="p1", outcome="saved",
                                          state="pending", text=TEXT, bill_key="BYJ1")}  # fmt: skip
    v1, client = FakeV1(), FakeClient(["另一条评论"])
    wb, _, _ = writeback(pending, v1, client)
    await wb.handle(spec(), result())
    assert v1.comments == [("p1", TEXT, "u1")]


async def test_dead_lettered_text_and_refusal() -> None:
    refusal = PermanentError("userNotExist", code="userNotExist")
    v1, client = FakeV1(fail=refusal), FakeClient([])
    wb, producer, _ = writeback({}, v1, client)
    returned = await wb.handle(spec(), result(BillOutcome.FAILED))
    assert returned is not None and returned.error_type == "userNotExist"
    assert "u1" in returned.message and "writeback.comment_user" in returned.message
    assert "dingdee dlq replay --stage extractor --key p1 --execute" in returned.message
    assert states(producer) == ["pending", "failed"]
    text = codec.decode_model(
        producer.sent[0][2], WritebackMark, supported_versions=frozenset({1})
    ).text
    assert text.startswith("未能生成金蝶费用报销单：FProposerID: 员工 EMP0099 不存在")
    # failed is final for a redelivery of the result: it does not try again
    v1.fail = None
    assert await wb.handle(spec(), result(BillOutcome.FAILED)) is None
    assert v1.comments == []


async def test_a_replayed_request_posts_a_failed_key_once() -> None:
    closed = PermanentError("审批状态异常", code="aflowProcessInstCanNotBeExecuted")
    v1, client = FakeV1(fail=closed), FakeClient([])
    wb, producer, _ = writeback({}, v1, client)
    refused = await wb.handle(spec(), result())
    assert refused is not None and refused.error_type == "aflowProcessInstCanNotBeExecuted"
    assert "in its present state" in refused.message
    # refused again while the cause is not fixed: failed again, replayable again
    again = await wb.handle(spec(), result(), again=True)
    assert again is not None and v1.comments == []
    v1.fail = None
    assert await wb.handle(spec(), result(), again=True) is None
    assert v1.comments == [("p1", TEXT, "u1")]
    assert client.gets == 0  # a failed key had no comment posted: nothing to check first
    # a second copy of the replay, and the result redelivered: never a second comment
    assert await wb.handle(spec(), result(), again=True) is None
    assert await wb.handle(spec(), result()) is None
    assert len(v1.comments) == 1
    assert states(producer) == ["pending", "failed", "pending", "failed", "pending", "done"]


async def test_no_signer_is_a_replayable_refusal() -> None:
    v1, client = FakeV1(), FakeClient([])
    wb, _, _ = writeback({}, v1, client)
    nobody = result().model_copy(
        update={"source": SourceRef(process_instance_id="p1", originator_userid=None)}
    )
    refused = await wb.handle(spec(), nobody)
    assert refused is not None and refused.error_type == "writeback_no_user"
    assert "writeback.comment_user" in refused.message and v1.comments == []


async def test_both_channels_once_each_the_notification_to_the_applicant() -> None:
    v1, client = FakeV1(), FakeClient([])
    wb, producer, counted = writeback({}, v1, client)
    assert await wb.handle(spec("both", user="manager7"), result()) is None
    assert v1.comments == [("p1", TEXT, "manager7")]  # signed by the configured user
    assert client.notified == [(7, "u1", TEXT)]  # sent to the applicant from agent 7
    assert [k for _, k, _ in producer.sent] == [b"p1:saved", b"p1:saved"] + [
        b"p1:saved:notification"
    ] * 2
    assert counted == ["main", "main"]
    await wb.handle(spec("both"), result(BillOutcome.ALREADY_EXISTS))
    assert len(v1.comments) == 1 and len(client.notified) == 1


async def test_a_pending_notification_is_sent_again_without_a_get() -> None:
    pending = {"p1:saved:notification": WritebackMark(process_instance_id="p1", outcome="saved",
               channel="notification", state="pending", text=TEXT, bill_key="BYJ1")}  # fmt: skip
    v1, client = FakeV1(), FakeClient([])
    wb, _, _ = writeback(pending, v1, client)
    await wb.handle(spec("notification"), result())
    assert client.notified == [(7, "u1", TEXT)] and client.gets == 0 and v1.comments == []


async def test_a_refused_notification_replays_alone() -> None:
    v1, client = FakeV1(), FakeClient([])
    client.notify_fail = PermanentError("errcode 40035", code="errcode_40035")
    wb, _, _ = writeback({}, v1, client)
    refused = await wb.handle(spec("both"), result())
    assert refused is not None and "work notification to u1" in refused.message
    assert len(v1.comments) == 1 and client.notified == []
    client.notify_fail = None
    assert await wb.handle(spec("both"), result(), again=True) is None
    assert len(v1.comments) == 1, "the comment was done: not posted again"
    assert client.notified == [(7, "u1", TEXT)]


def test_notifying_flows_need_the_apps_agent_id(tmp_path: Path) -> None:
    from dingdee_extractor.followups import load_specs
    from dingdee_extractor.settings import ExtractorSettings

    text = (ROOT / "config" / "flows.yaml").read_text(encoding="utf-8")
    flows = tmp_path / "flows.yaml"
    flows.write_text(
        text.replace(
            "comment_user: originator\n", "comment_user: originator\n      notify: notification\n"
        )
    )

    def settings(app: dict[str, object]) -> ExtractorSettings:
        return ExtractorSettings.model_validate(
            {
                "flows_file": flows,
                "dingtalk": {"apps": {"main": {"app_key": "k", "app_secret": "s", **app}}},
            }
        )

    with pytest.raises(FatalError) as exc:
        load_specs(settings({}))
    assert "petty-cash" in exc.value.message and "agent_id" in exc.value.message
    specs = load_specs(settings({"agent_id": 42}))
    wb = specs["petty-cash"].writeback
    assert wb is not None and wb.channels == ("notification",)
