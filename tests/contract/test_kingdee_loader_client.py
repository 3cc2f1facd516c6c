"""The loader's Kingdee client and sink against the sandbox: one test per taxonomy branch.

Transport failures, 5xx and ``response_error:`` are transient; a lost session is re-established
once; rejected credentials are a configuration error (transient: the loader waits); rows map
back by DIndex; after an unknown outcome the sink asks Kingdee before re-sending, so a
commit-then-drop never makes a second bill. A batch that keeps failing while other calls succeed
is exhausted; Kingdee failing as a whole is back-pressure.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from dingdee_common.contracts.v1 import BillReady, SourceRef
from dingdee_common.errors import ErrorClass, TransientError
from dingdee_common.kafka.dlq import SourceRecord
from dingdee_common.settings import RetrySettings
from dingdee_loader.batcher import Pending
from dingdee_loader.kingdee.client import KingdeeClient, KingdeeConfigError, Lane
from dingdee_loader.kingdee.models import RowKind
from dingdee_loader.metrics import LoaderMetrics
from dingdee_loader.settings import KingdeeSettings
from dingdee_loader.sink import KingdeeSink, KingdeeUnavailableError
from dingdee_sandbox.kingdee import SandboxConfig
from dingdee_sandbox.kingdee.demo import SAVE_OPTIONS, expense_model, invalid_expense_model
from tests.contract.test_kingdee_sandbox import Kd, start_kd

pytestmark = pytest.mark.contract

FORM = "ER_ExpReimbursement"
APP_ID = "204399_72epSbtEQMC92Vwt2d3LRa9LRqSc1tqJ"


@pytest.fixture
async def kd() -> AsyncIterator[Kd]:
    box, runner = await start_kd(SandboxConfig(seed=2))
    yield box
    await box.http.aclose()
    await runner.cleanup()


def settings(kd: Kd, **overrides: Any) -> KingdeeSettings:
    values: dict[str, Any] = {
        "server_url": f"{kd.root}/k3cloud",
        "acct_id": "5db25ac8d2b819",
        "username": "webapi",
        "app_id": APP_ID,
        "app_secret": SecretStr("fb7d46647ac346dbb5fcd45b65512a45"),
        "password": SecretStr("demo-password"),
        "timeout_seconds": 2.0,
        **overrides,
    }
    return KingdeeSettings(**values)


def client(kd: Kd, **overrides: Any) -> tuple[KingdeeClient, Lane, LoaderMetrics]:
    s = settings(kd, **overrides)
    metrics = LoaderMetrics.create(CollectorRegistry())
    return KingdeeClient(s, metrics), Lane(0, s), metrics


def models(*keys: str, bad: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    rng = random.Random(5)
    return [
        invalid_expense_model(k, rng, "missing_causa") if k in bad else expense_model(k, rng)
        for k in keys
    ]


class TestClient:
    @pytest.mark.parametrize("mode", ["signature", "session"])
    async def test_rows_map_back_by_dindex(self, kd: Kd, mode: str) -> None:
        kc, lane, _ = client(kd, auth_mode=mode)
        await kc.batch_save(lane, FORM, {}, models("C0"))
        rows = await kc.batch_save(lane, FORM, {}, models("C1", "C0", "C2", bad=("C2",)))
        assert rows[0].kind is RowKind.SAVED and rows[0].number == "C1" and rows[0].kingdee_id
        assert rows[1].kind is RowKind.EXISTS
        assert rows[2].kind is RowKind.REJECTED and rows[2].field == "FCausa"
        assert "字段“事由”是必填项" in (rows[2].message or "")
        assert await kc.existing(lane, FORM, "FBillNo", ["C0", "C1", "C9"]) == {
            "C0": kd.state.store.find(FORM, "C0").id,  # type: ignore[union-attr]
            "C1": rows[0].kingdee_id,
        }
        await lane.aclose()

    @pytest.mark.parametrize(
        ("fault", "code"),
        [
            ("http_503", "kingdee_http_503"),
            ("http_502", "kingdee_http_502"),
            ("response_error", "kingdee_response_error"),
            ("commit_then_drop", "kingdee_connection"),
            ("slow", "kingdee_timeout"),
            ("msgcode_14", "kingdee_msgcode_14"),
        ],
    )
    async def test_transport_failures_are_transient(self, kd: Kd, fault: str, code: str) -> None:
        kd.state.update_config({"slow_seconds": 1.0})
        kc, lane, metrics = client(kd, timeout_seconds=0.4)
        kd.state.fault_queue.append(fault)
        with pytest.raises(TransientError) as caught:
            await kc.batch_save(lane, FORM, {}, models("T1"))
        assert caught.value.error_type == code
        samples = next(iter(metrics.kingdee_errors.collect())).samples
        assert sum(s.value for s in samples if s.name.endswith("_total")) == 1
        await lane.aclose()

    @pytest.mark.parametrize("mode", ["signature", "session"])
    async def test_session_lost_relogs_in_once(self, kd: Kd, mode: str) -> None:
        kc, lane, metrics = client(kd, auth_mode=mode)
        await kc.batch_save(lane, FORM, {}, models("L1"))
        kd.state.revoke_sessions()
        rows = await kc.batch_save(lane, FORM, {}, models("L2"))
        assert rows[0].kind is RowKind.SAVED
        assert metrics.relogins._value.get() == 1
        assert kd.state.stats["sessions_created"] == 2
        await lane.aclose()

    async def test_session_lost_again_after_relogin_is_transient(self, kd: Kd) -> None:
        kc, lane, metrics = client(kd, auth_mode="session")
        kd.state.update_config({"session_ttl_seconds": 1e-6})
        with pytest.raises(TransientError) as caught:
            await kc.batch_save(lane, FORM, {}, models("L3"))
        assert caught.value.error_type == "kingdee_session_lost"
        assert metrics.relogins._value.get() == 1
        await lane.aclose()

    @pytest.mark.parametrize(
        "overrides",
        [
            {"app_secret": SecretStr("0" * 32)},
            {"auth_mode": "session", "password": SecretStr("wrong")},
            {"auth_mode": "session", "acct_id": "nope"},
        ],
        ids=["bad-secret", "bad-password", "bad-data-center"],
    )
    async def test_rejected_credentials_are_configuration_errors(
        self, kd: Kd, overrides: dict[str, Any]
    ) -> None:
        kc, lane, _ = client(kd, **overrides)
        with pytest.raises(KingdeeConfigError, match="DINGDEE_KINGDEE__") as caught:
            await kc.batch_save(lane, FORM, {}, models("X1"))
        assert caught.value.error_type == "kingdee_auth"
        assert kd.state.store.find(FORM, "X1") is None
        await lane.aclose()


def pending(keys: list[str], bad: tuple[str, ...] = (), suspect: bool = False) -> list[Pending]:
    out = []
    for n, (key, model) in enumerate(zip(keys, models(*keys, bad=bad), strict=True)):
        bill = BillReady(
            flow="petty-cash",
            bill_key=key,
            form_id=FORM,
            save_options=SAVE_OPTIONS,
            model=model,
            source=SourceRef(process_instance_id=f"pi-{key}"),
        )
        out.append(Pending(SourceRecord("t", 0, n, key.encode(), b"{}"), bill, suspect))
    return out


class TestSink:
    async def test_commit_then_drop_then_5xx_ends_with_each_bill_once(self, kd: Kd) -> None:
        kc, lane, metrics = client(kd)
        writer = KingdeeSink(kc, RetrySettings(initial_backoff_seconds=0.01), metrics)
        kd.state.fault_queue.extend(["commit_then_drop", "http_503"])
        keys = [f"W{i}" for i in range(6)]
        done = await writer.write(lane, pending(keys, bad=("W3",)))
        outcomes = {r.pending.bill.bill_key: r.outcome for r in done}
        assert len(done) == 6
        assert {k for k, o in outcomes.items() if o == "already_exists"} == {
            "W0",
            "W1",
            "W2",
            "W4",
            "W5",
        }
        assert outcomes["W3"] == "dead_lettered"
        assert sorted(r.number for r in kd.state.store.bills(FORM)) == [
            "W0",
            "W1",
            "W2",
            "W4",
            "W5",
        ]
        assert metrics.prechecks.labels("found")._value.get() == 1
        await lane.aclose()

    async def test_kingdee_failing_as_a_whole_is_back_pressure_not_dead_letters(
        self, kd: Kd
    ) -> None:
        """Every call 503: after 3 failures in a row the bills come back held, none resolved."""
        kd.state.update_config({"http_5xx_rate": 1.0})
        kc, lane, metrics = client(kd)
        policy = RetrySettings(initial_backoff_seconds=0.01, max_attempts=20)
        sink = KingdeeSink(kc, policy, metrics, pause_after_failures=3)
        batch = pending(["Z1", "Z2"])
        with pytest.raises(KingdeeUnavailableError) as caught:
            await sink.write(lane, batch)
        assert caught.value.done == []
        assert caught.value.held == batch and all(p.suspect for p in batch)
        assert caught.value.error_type == "kingdee_http_503"
        assert kd.state.stats["calls_batchsave"] == 1  # then existence checks, all failed
        assert kd.state.stats["calls_executebillquery"] == 2
        kd.state.update_config({"http_5xx_rate": 0.0})
        await sink.probe(lane, batch[0].bill)
        assert not sink.availability.failing
        await lane.aclose()

    async def test_budget_spent_while_nothing_succeeds_is_back_pressure(self, kd: Kd) -> None:
        """A budget smaller than the pause threshold: still no dead letter without a success."""
        kd.state.update_config({"http_5xx_rate": 1.0})
        kc, lane, metrics = client(kd)
        policy = RetrySettings(initial_backoff_seconds=0.01, max_attempts=2)
        sink = KingdeeSink(kc, policy, metrics, pause_after_failures=10)
        with pytest.raises(KingdeeUnavailableError):
            await sink.write(lane, pending(["Y1"]))
        await lane.aclose()

    async def test_queries_answering_while_every_save_fails_is_back_pressure(self, kd: Kd) -> None:
        """Existence checks answer, every BatchSave 503s: no bill is to blame, none exhausted."""
        kd.state.update_config({"http_5xx_rate": 1.0, "fault_services": ["batchsave"]})
        kc, lane, metrics = client(kd)
        policy = RetrySettings(initial_backoff_seconds=0.01, max_attempts=20)
        sink = KingdeeSink(kc, policy, metrics, pause_after_failures=3)
        with pytest.raises(KingdeeUnavailableError):
            await sink.write(lane, pending(["X1", "X2"]))
        assert kd.state.stats["calls_batchsave"] == 3
        await lane.aclose()

    async def test_failing_while_other_bills_are_saved_is_exhausted(self, kd: Kd) -> None:
        """A batch Kingdee throws on (P1's data) keeps failing while another lane saves bills:
        once its budget is spent its bills are ``exhausted``; the other bills are all saved."""
        kd.state.update_config({"response_error_numbers": ["P1"]})
        kc, lane, metrics = client(kd)
        other = Lane(1, settings(kd))
        policy = RetrySettings(initial_backoff_seconds=0.05, max_backoff_seconds=0.1)
        sink = KingdeeSink(kc, policy.model_copy(update={"max_attempts": 6}), metrics)
        poisoned = asyncio.create_task(sink.write(lane, pending(["P1", "P2"])))
        saved: list[str] = []
        n = 0
        while not poisoned.done():
            n += 1
            done = await sink.write(other, pending([f"G{n}"]))
            saved += [r.pending.bill.bill_key for r in done if r.outcome == "saved"]
            await asyncio.sleep(0.02)
        resolutions = poisoned.result()
        assert {r.error_class for r in resolutions} == {ErrorClass.EXHAUSTED}
        assert {r.error_type for r in resolutions} == {"kingdee_response_error"}
        assert len(saved) == n and n > 1
        assert sorted(r.number for r in kd.state.store.bills(FORM)) == sorted(saved)
        await lane.aclose()
        await other.aclose()

    async def test_a_batch_failing_alone_is_held_not_exhausted(self, kd: Kd) -> None:
        """The same batch with no other traffic cannot be told from an outage: held, no verdict."""
        kd.state.update_config({"response_error_numbers": ["P1"]})
        kc, lane, metrics = client(kd)
        policy = RetrySettings(initial_backoff_seconds=0.01, max_attempts=6)
        with pytest.raises(KingdeeUnavailableError) as caught:
            await KingdeeSink(kc, policy, metrics).write(lane, pending(["P1", "P2"]))
        assert [p.bill.bill_key for p in caught.value.held] == ["P1", "P2"]
        await lane.aclose()

    async def test_suspect_bills_are_checked_before_the_first_send(self, kd: Kd) -> None:
        kc, lane, metrics = client(kd)
        await kc.batch_save(lane, FORM, {}, models("S1"))
        done = await KingdeeSink(kc, RetrySettings(), metrics).write(
            lane, pending(["S1", "S2"], suspect=True)
        )
        assert {r.pending.bill.bill_key: r.outcome for r in done} == {
            "S1": "already_exists",
            "S2": "saved",
        }
        assert kd.state.stats["packages_rejected"] == 0, "S1 must not be sent again"
        await lane.aclose()
