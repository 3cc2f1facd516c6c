"""The console's sign-in pieces without a server: signed cookies, CSRF tokens, settings that must
not start, and the doctor report the flows page shows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from pydantic import SecretStr, ValidationError

from dingdee_ops.cli.reconcile import as_json_report
from dingdee_ops.console.journal import _trace_id
from dingdee_ops.console.security import OPERATOR, VIEWER, Identity, Signer, sign_in
from dingdee_ops.console.settings import ConsoleBlock
from dingdee_ops.console.state import _report
from dingdee_ops.reconcile.model import ReconcileReport


def test_a_cookie_round_trips_and_any_change_or_expiry_is_refused() -> None:
    signer = Signer("s3cret")
    who = Identity("local-operator", OPERATOR, "n1")
    cookie = signer.cookie(who, 60)
    assert signer.read_cookie(cookie) == who
    data, mac = cookie.split(".")
    forged = Signer("other").cookie(Identity("local-operator", OPERATOR, "n1"), 60)
    assert signer.read_cookie(forged) is None, "signed with another secret"
    assert signer.read_cookie(data + "." + mac[:-2] + "AA") is None
    assert signer.read_cookie(data) is None
    assert signer.read_cookie(signer.cookie(who, -1)) is None, "expired"
    viewer = Identity("local-viewer", VIEWER, "n2")
    assert signer.csrf(viewer) != signer.csrf(who) != Signer("other").csrf(who)
    assert signer.csrf(who) == signer.csrf(Identity("local-operator", OPERATOR, "n1"))


def test_settings_refuse_what_would_be_unsafe() -> None:
    with pytest.raises(ValidationError, match="needs DINGDEE_CONSOLE__TOKEN"):
        ConsoleBlock()
    with pytest.raises(ValidationError, match="PROXY_SECRET"):
        ConsoleBlock(auth="proxy", host="0.0.0.0")  # noqa: S104 - the case being refused
    assert ConsoleBlock(auth="proxy").host == "127.0.0.1"
    ok = ConsoleBlock(auth="proxy", host="0.0.0.0", proxy_secret=SecretStr("p-Kd81"))  # noqa: S104
    assert "p-Kd81" not in repr(ok)


def test_the_doctor_report(tmp_path: Path) -> None:
    assert _report("doctor", None).missing
    path = tmp_path / "doctor.json"
    assert _report("doctor", path).missing, "no file yet"
    checks = [{"level": "ok"}, {"level": "warning"}, {"level": "error"}]
    path.write_bytes(orjson.dumps({"ok": False, "checks": checks}))
    report = _report("doctor", path)
    assert (report.ok, report.summary) == (False, "3 checks, 1 error(s), 1 warning(s)")


def test_the_reconcile_report(tmp_path: Path) -> None:
    report = ReconcileReport(
        "petty-cash", datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    )
    report.instances = 7
    path = tmp_path / "reconcile.json"
    path.write_bytes(orjson.dumps(as_json_report(report)))
    shown = _report("reconcile", path)
    assert shown.ok
    assert shown.summary.startswith("petty-cash 2026-11-01T00:00:00+00:00 ~ 2026-12-01")
    assert "instances 7" in shown.summary and "missing 0" in shown.summary


def test_sign_in_never_redirects_off_site() -> None:
    config = ConsoleBlock(token=SecretStr("tok-Q1"))
    signer = Signer("s")
    for given, expected in (("/dlq", "/dlq"), ("//evil.example", "/"), ("/\\evil.example", "/")):
        request = make_mocked_request("GET", f"/signin?token=tok-Q1&next={given}")
        with pytest.raises(web.HTTPSeeOther) as done:
            sign_in(config, signer, request)
        assert done.value.location == expected
        assert "tok-Q1" not in str(done.value.headers)
    with pytest.raises(web.HTTPUnauthorized):
        sign_in(config, signer, make_mocked_request("GET", "/signin?token=nope"))


def test_only_a_w3c_trace_id_becomes_a_link() -> None:
    good = "4bf92f3577b34da6a3ce929d0e0e4736"
    assert _trace_id([("traceparent", f"00-{good}-00f067aa0ba902b7-01".encode())]) == good
    assert _trace_id([("traceparent", b'00-javascript:alert(1)"-00f067aa0ba902b7-01')]) is None
    assert _trace_id([]) is None
