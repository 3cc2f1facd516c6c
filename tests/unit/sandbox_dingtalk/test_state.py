"""Instances over time: creation, transitions, linked modify/revoke, listeners, demo data,
listids validation and paging."""

from __future__ import annotations

from collections import Counter

import pytest

from dingdee_sandbox.demo_org import PROCESS_CODES
from dingdee_sandbox.dingtalk.config import Faults
from dingdee_sandbox.dingtalk.listing import ID_CAP, ListError, page, validate
from dingdee_sandbox.dingtalk.render import render_old, render_v1
from dingdee_sandbox.dingtalk.state import DAY_MS, State

PETTY, DEPT = PROCESS_CODES["petty-cash"], PROCESS_CODES["department-sync"]
T0 = 1_790_000_000_000


def manual(**faults: object) -> State:
    return State(seed=1, manual_now_ms=T0, faults=Faults(**faults))  # type: ignore[arg-type]


class TestTransitions:
    def test_approve_refuse_terminate_and_listener_changes(self) -> None:
        state = manual()
        seen: list[tuple[str, str, str]] = []
        state.listeners.append(lambda *event: seen.append(event))
        a, b, c = (state.create(PETTY) for _ in range(3))
        state.manual_now_ms = T0 + 60_000
        state.finish(a.id, "approve")
        state.finish(b.id, "refuse")
        state.finish(c.id, "terminate")
        assert (a.status, a.result, a.finish_ms) == ("COMPLETED", "agree", T0 + 60_000)
        assert (b.status, b.result) == ("COMPLETED", "refuse")
        assert (c.status, c.result) == ("TERMINATED", "")
        assert [e[2] for e in seen] == ["start"] * 3 + ["finish", "finish", "terminate"]
        assert seen[3] == (a.id, PETTY, "finish")
        with pytest.raises(ValueError, match="not running"):
            state.finish(a.id, "approve")
        with pytest.raises(ValueError, match="unknown action"):
            state.finish(a.id, "explode")
        with pytest.raises(KeyError):
            state.finish("nope", "approve")

    @pytest.mark.parametrize("action", ["modify", "revoke"])
    def test_modify_or_revoke_after_approval_spawns_a_linked_instance(self, action: str) -> None:
        state = manual()
        original = state.create(PETTY)
        with pytest.raises(ValueError, match="only approved"):
            state.finish(original.id, action)
        state.finish(original.id, "approve")
        state.manual_now_ms = T0 + 5 * DAY_MS
        linked = state.finish(original.id, action)
        assert linked.biz_action == action.upper() and linked.status == "RUNNING"
        assert linked.main_id == original.id and original.attached == [linked.id]
        assert linked.create_ms == T0 + 5 * DAY_MS  # listed in the current window
        assert linked.originator == original.originator and linked.form == original.form
        assert render_old(linked)["main_process_instance_id"] == original.id
        assert render_old(original)["attached_process_instance_ids"] == [linked.id]
        assert [r["process_instance_id"] for r in state.expected()] == [original.id]

    def test_render_old_hides_finish_time_and_result_while_running(self) -> None:
        state = manual()
        inst = state.create(PETTY)
        body = render_old(inst)
        assert "finish_time" not in body and body["result"] == "" and "id" not in body
        assert inst.id in body["tasks"][0]["url"]
        assert body["tasks"][0]["task_status"] == "RUNNING"
        state.finish(inst.id, "approve")
        body = render_old(inst)
        assert body["finish_time"] and body["result"] == "agree"
        assert body["operation_records"][-1]["operation_result"] == "AGREE"

    def test_render_v1_prints_cst_wall_time_with_z_at_minute_precision(self) -> None:
        state = manual()
        inst = state.create(PETTY, 1_717_403_597_000)  # 2024-06-03 16:33:17 CST
        body = render_v1(inst)
        assert body["createTime"] == "2024-06-03T16:33Z"
        assert render_old(inst)["create_time"] == "2024-06-03 16:33:17"
        assert isinstance(body["tasks"][0]["taskId"], int)
        assert inst.business_id.startswith("202406031633") and len(inst.business_id) == 21


class TestDemo:
    def test_counts_mix_and_determinism(self) -> None:
        a, b = manual(), manual()
        a.seed_demo(300)
        b.seed_demo(300)
        assert [a.summary(i) for i in a.instances.values()] == [
            b.summary(i) for i in b.instances.values()
        ]
        codes = Counter(i.process_code for i in a.instances.values())
        assert codes == {PETTY: 300, DEPT: 20}
        agree = sum(1 for i in a.instances.values() if i.result == "agree")
        assert 0.78 < agree / 320 < 0.92
        statuses = {i.status for i in a.instances.values()}
        assert statuses == {"COMPLETED", "TERMINATED", "RUNNING"}
        assert all(T0 - 30 * DAY_MS <= i.create_ms <= T0 for i in a.instances.values())
        other = State(seed=2, manual_now_ms=T0)
        other.seed_demo(300)
        assert set(other.instances) != set(a.instances)


class TestListing:
    def check(self, state: State, **overrides: object) -> str:
        args: dict[str, object] = {
            "process_code": PETTY,
            "start": T0 - DAY_MS,
            "end": T0,
            "cursor": 0,
            "size": 20,
            "userids": [],
        }
        args.update(overrides)
        try:
            validate(state, **args)  # type: ignore[arg-type]
        except ListError as exc:
            return exc.code
        return "ok"

    def test_rules(self) -> None:
        state = manual()
        assert self.check(state) == "ok"
        assert self.check(state, process_code="") == "invalidProcessCode"
        assert self.check(state, start=None) == "invalidInstanceListIdsStartTime"
        assert self.check(state, size=21) == "invalidMaxResults"
        assert self.check(state, size=0) == "invalidMaxResults"
        assert self.check(state, userids=[str(n) for n in range(11)]) == "invalidUserIds"
        assert self.check(state, userids=[str(n) for n in range(10)]) == "ok"
        assert self.check(state, end=T0 - 2 * DAY_MS) == "invalidEndTime"
        assert self.check(state, start=T0 - 120 * DAY_MS) == "ok"
        assert self.check(state, start=T0 - 120 * DAY_MS - 1) == "invalidEndTime"
        old_start = T0 - 365 * DAY_MS
        assert self.check(state, start=old_start, end=old_start + DAY_MS) == "ok"
        assert self.check(state, start=old_start - 1, end=old_start) == "invalidEndTime"
        assert self.check(state, start=T0 - 100 * DAY_MS, end=None) == "ok"
        assert self.check(state, start=T0 - 121 * DAY_MS, end=None) == "invalidEndTime"
        assert self.check(state, end=T0 + 1) == "ok"

    def test_premium_lookback_and_future_end(self) -> None:
        start = T0 - 4 * 365 * DAY_MS
        assert self.check(manual(premium=True), start=start, end=start + DAY_MS) == "ok"
        assert self.check(manual(), start=start, end=start + DAY_MS) == "invalidEndTime"
        assert self.check(manual(reject_future_end=True), end=T0 + 1) == "invalidEndTime"

    def test_filter_is_inclusive_on_creation_time_and_pages_by_offset(self) -> None:
        state = manual()
        ids = [state.create(PETTY, T0 - 1000 + n).id for n in range(45)]
        state.create(PETTY, T0 - 1001)
        state.create(DEPT, T0 - 500)
        got, cursor = [], 0
        while True:
            query = validate(state, PETTY, T0 - 1000, T0 - 956, cursor, 20, [])
            chunk, nxt = page(state, query)
            got += chunk
            if nxt is None:
                break
            cursor = nxt
        assert got == ids and cursor == 40

    def test_userids_scope_and_statuses(self) -> None:
        state = manual()
        for _ in range(30):
            state.create(PETTY, T0 - 1000)
        some = next(iter(state.instances.values()))
        by_user = state.listed(PETTY, T0 - DAY_MS, T0, [some.originator])
        assert by_user and all(state.instances[i].originator == some.originator for i in by_user)
        state.faults = Faults(scope_dept_ids=[some.dept_id])
        scoped = state.listed(PETTY, T0 - DAY_MS, T0)
        assert scoped and all(state.instances[i].dept_id == some.dept_id for i in scoped)
        state.faults = Faults()
        state.finish(some.id, "approve")
        query = validate(state, PETTY, T0 - DAY_MS, T0, 0, 20, [], ["COMPLETED"])
        assert page(state, query) == ([some.id], None)

    def test_ten_thousand_id_cap(self) -> None:
        state = manual()
        for n in range(ID_CAP + 30):
            state.create(PETTY, T0 - 100_000 + n, form=[])
        last = validate(state, PETTY, T0 - DAY_MS, T0, ID_CAP - 20, 20, [])
        chunk, nxt = page(state, last)
        assert len(chunk) == 20 and nxt is None
        beyond = validate(state, PETTY, T0 - DAY_MS, T0, ID_CAP, 20, [])
        assert page(state, beyond) == ([], None)
