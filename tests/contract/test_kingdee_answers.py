"""Kingdee answers our sandbox gave no shape for until issue 15, one test per shape.

Each goes over real HTTP from the sandbox's knob (``POST /_sandbox/faults`` one-shot faults or
``POST /_sandbox/config``) through the loader's client to what the sink does with the batch: a
record Kingdee blames is dead-lettered with Kingdee's message naming it; anything else (a lost
session, a busy or locked server, an IIS page, an empty body, a refused login or permission) never
dead-letters a bill and never makes a second one.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from dingdee_common.errors import ErrorClass, TransientError
from dingdee_common.observability.server import Health
from dingdee_common.settings import RetrySettings
from dingdee_loader.backpressure import Outage
from dingdee_loader.doctor import FormTarget, kingdee_checks, startup_check
from dingdee_loader.kingdee.client import KingdeeConfigError
from dingdee_loader.sink import KingdeeSink, KingdeeUnavailableError
from tests.contract.test_kingdee_loader_client import FORM, client, kd, pending, settings
from tests.contract.test_kingdee_sandbox import Kd
from tests.helpers import poll_until

pytestmark = pytest.mark.contract
__all__ = ["kd"]  # the fixture, re-used

FAST = RetrySettings(initial_backoff_seconds=0.01, max_backoff_seconds=0.02, max_attempts=6)


async def knob(kd: Kd, *, faults: list[str] | None = None, **config: Any) -> None:
    """Turn the sandbox's knobs through its control API, as an operator or a bench would."""
    if config:
        answer = await kd.http.post(f"{kd.root}/_sandbox/config", json=config)
        assert answer.status_code == 200, answer.text
    if faults:
        answer = await kd.http.post(f"{kd.root}/_sandbox/faults", json={"queue": faults})
        assert answer.status_code == 200, answer.text


def outcomes(done: list[Any]) -> dict[str, str]:
    return {r.pending.bill.bill_key: r.outcome for r in done}


def stored(kd: Kd) -> list[str]:
    return sorted(str(r.number) for r in kd.state.store.bills(FORM))


@pytest.mark.parametrize("mode", ["signature", "session"])
async def test_session_expiry_mid_batch_relogs_in_without_a_second_bill(kd: Kd, mode: str) -> None:
    """§1.5: the session ends between the existence check and the BatchSave of one batch."""
    await knob(kd, faults=["session_expired"], fault_services=["batchsave"])
    kc, lane, metrics = client(kd, auth_mode=mode)
    done = await KingdeeSink(kc, FAST, metrics).write(lane, pending(["E1", "E2"], suspect=True))
    assert outcomes(done) == {"E1": "saved", "E2": "saved"}
    assert metrics.relogins._value.get() == 1
    assert kd.state.stats["session_lost"] == 1 and kd.state.stats["calls_batchsave"] == 2
    assert stored(kd) == ["E1", "E2"]
    await lane.aclose()


async def test_session_lost_in_another_language_relogs_in(kd: Kd) -> None:
    """§3.4: messages follow the lcid; MsgCode 1 alone means the session (was: fatal)."""
    await knob(kd, session_lost_message="Session information lost. Please log in again.")
    kc, lane, metrics = client(kd, auth_mode="session")
    await kc.login(lane)
    kd.state.revoke_sessions()
    done = await KingdeeSink(kc, FAST, metrics).write(lane, pending(["E3"]))
    assert outcomes(done) == {"E3": "saved"} and metrics.relogins._value.get() == 1
    await lane.aclose()


@pytest.mark.parametrize("code", [9, 10, 11, 12])
async def test_msgcodes_that_blame_the_record_dead_letter_it_naming_the_row(
    kd: Kd, code: int
) -> None:
    """§3.3/§3.4: the record's fault → a permanent dead letter with Kingdee's message; the rest of
    the batch (refused with it, nothing saved) is sent again and saved."""
    await knob(kd, row_msgcode_numbers={"R2": code})
    kc, lane, metrics = client(kd)
    done = await KingdeeSink(kc, FAST, metrics).write(lane, pending(["R1", "R2", "R3"]))
    assert outcomes(done) == {"R1": "saved", "R2": "dead_lettered", "R3": "saved"}
    (letter,) = [r for r in done if r.outcome == "dead_lettered"]
    assert letter.error_class is ErrorClass.PERMANENT
    assert "FBillNo: 单据编号为“R2”的单据" in (letter.message or "")
    assert stored(kd) == ["R1", "R3"]
    await lane.aclose()


@pytest.mark.parametrize(
    ("fault", "config"),
    [
        ("msgcode_4", {}),  # exception
        ("msgcode_6", {}),  # database operation failed (a deadlock)
        ("msgcode_13", {}),  # network-control conflict: someone holds the lock
        ("msgcode_14", {}),  # call limited
        (None, {"row_msgcode_numbers": {"B1": 13}}),  # a lock naming the row is no data fault
    ],
    ids=["exception", "database", "lock", "call-limited", "lock-naming-a-row"],
)
async def test_msgcodes_of_a_busy_or_locked_kingdee_are_retried(
    kd: Kd, fault: str | None, config: dict[str, Any]
) -> None:
    await knob(kd, faults=[fault] if fault else None, **config)
    kc, lane, metrics = client(kd)
    sink = KingdeeSink(kc, FAST, metrics, pause_after_failures=10)
    task = asyncio.create_task(sink.write(lane, pending(["B1", "B2"])))
    if config:  # the lock is released once Kingdee refused the batch for it
        await poll_until(
            lambda: kd.state.stats["packages_rejected"] > 0 or task.done(),
            timeout=5,
            what="the refusal",
            interval=0.001,
        )
        await knob(kd, row_msgcode_numbers={})
    done = await task
    assert outcomes(done) == {"B1": "saved", "B2": "saved"}
    assert stored(kd) == ["B1", "B2"]
    await lane.aclose()


@pytest.mark.parametrize("code", [2, 7, 15])
async def test_msgcodes_refusing_the_loader_hold_every_bill(kd: Kd, code: int) -> None:
    """No permission, licence, administrator login forbidden: a setting's fault, not the bills'
    (was: every bill of the batch dead-lettered as ``MsgCode n``)."""
    await knob(kd, faults=[f"msgcode_{code}"], fault_services=["batchsave"])
    kc, lane, metrics = client(kd)
    batch = pending(["P1", "P2"])
    with pytest.raises(KingdeeUnavailableError) as caught:
        await KingdeeSink(kc, FAST, metrics).write(lane, batch)
    assert caught.value.done == [] and caught.value.held == batch
    assert caught.value.error_type == f"kingdee_msgcode_{code}"
    assert isinstance(caught.value.__cause__, KingdeeConfigError)
    assert kd.state.stats["calls_batchsave"] == 1, "no retry storm on a refusal"
    await lane.aclose()


async def test_no_permission_on_a_form_is_that_form_s_doctor_error(kd: Kd) -> None:
    await knob(kd, faults=["msgcode_2"], fault_services=["executebillquery"])
    target = FormTarget("petty-cash", FORM, {"FCausa": "x"})
    checks = await kingdee_checks(settings(kd, auth_mode="session"), [target])
    assert [(c.name, c.level) for c in checks] == [("login", "ok"), ("form", "error")]
    assert "没有权限" in checks[1].message and "permissions on the form" in checks[1].message


@pytest.mark.parametrize(
    ("fault", "code"), [("html_200", "kingdee_html"), ("http_500", "kingdee_http_500")]
)
async def test_an_iis_html_page_is_transient(kd: Kd, fault: str, code: str) -> None:
    await knob(kd, faults=[fault], fault_services=["batchsave"])
    kc, lane, metrics = client(kd)
    with pytest.raises(TransientError) as caught:
        await kc.batch_save(lane, FORM, {}, [pending(["H0"])[0].bill.model])
    assert caught.value.error_type == code and not isinstance(caught.value, KingdeeConfigError)
    if fault == "html_200":
        assert "Runtime Error" in caught.value.message
    await knob(kd, faults=[fault])
    done = await KingdeeSink(kc, FAST, metrics).write(lane, pending(["H1"]))
    assert outcomes(done) == {"H1": "saved"}
    await lane.aclose()


async def test_an_empty_200_is_checked_before_anything_is_sent_again(kd: Kd) -> None:
    """The BatchSave committed, the body is empty: the existence check finds the bills."""
    await knob(kd, faults=["empty_200"], fault_services=["batchsave"])
    kc, lane, metrics = client(kd)
    done = await KingdeeSink(kc, FAST, metrics).write(lane, pending(["M1", "M2"]))
    assert outcomes(done) == {"M1": "already_exists", "M2": "already_exists"}
    assert kd.state.stats["calls_batchsave"] == 1, "not sent a second time"
    assert stored(kd) == ["M1", "M2"]
    await lane.aclose()


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({"locked_users": ["webapi"]}, "已被锁定"),
        ({"password": "changed-in-kingdee"}, "PWError"),
    ],
    ids=["locked-account", "wrong-password"],
)
async def test_a_refused_login_is_a_configuration_error_the_loader_waits_on(
    kd: Kd, config: dict[str, Any], says: str
) -> None:
    """§1.2: not ready and why (readyz), no dead letter, one login per try; the doctor reports it;
    once Kingdee accepts the login again the held bills go out."""
    await knob(kd, **config)
    kc, lane, metrics = client(kd, auth_mode="session", refused_retry_seconds=0.05)
    batch = pending(["A1"])
    with pytest.raises(KingdeeUnavailableError) as caught:
        await KingdeeSink(kc, FAST, metrics).write(lane, batch)
    assert caught.value.done == [] and caught.value.held == batch
    assert caught.value.error_type == "kingdee_auth"
    assert kd.state.stats["login_failed"] == 1, "no retry storm that locks the account"

    (check,) = await kingdee_checks(settings(kd, auth_mode="session"))
    assert check.level == "error" and says in check.message and "__PASSWORD" in check.message

    health, recovered = Health(), asyncio.Event()
    sink = KingdeeSink(kc, FAST, metrics)
    outage = Outage(FAST, metrics, health, recovered.set)
    refused_before, began = kd.state.stats["login_failed"], time.monotonic()
    outage.begin(caught.value, lambda: sink.probe(lane, batch[0].bill))
    await poll_until(lambda: outage.probes >= 2, timeout=5, what="two failed probes", interval=0.01)
    ready, why = health.ready()
    assert not ready and "Kingdee refuses the loader's settings" in why and says in why
    tries = kd.state.stats["login_failed"] - refused_before
    assert outage.probes == tries, "each probe is one login"
    assert time.monotonic() - began >= 2 * 0.05, "probed every refused_retry_seconds, not faster"

    await knob(kd, locked_users=[], password="demo-password")
    await asyncio.wait_for(recovered.wait(), timeout=5)
    await outage.aclose()
    assert outcomes(await sink.write(lane, batch)) == {"A1": "saved"}
    await lane.aclose()


async def test_at_start_up_a_refused_login_waits_not_ready(kd: Kd) -> None:
    """The loader's start-up check: nothing consumed while refused; ready to go once accepted."""
    await knob(kd, locked_users=["webapi"])
    health, stop = Health(), asyncio.Event()
    s = settings(kd, auth_mode="session", refused_retry_seconds=0.05)
    task = asyncio.create_task(startup_check(s, health, stop))
    await poll_until(lambda: kd.state.stats["login_failed"] >= 2, timeout=5, what="a 2nd try")
    ready, why = health.ready()
    assert not task.done() and not ready and "login" in why and "已被锁定" in why
    await knob(kd, locked_users=[])
    assert await asyncio.wait_for(task, timeout=5) is True
    stop.set()
