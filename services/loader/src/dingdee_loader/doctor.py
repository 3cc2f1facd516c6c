"""The Kingdee part of ``dingdee doctor``, also run by the loader at start-up (login only).

Login in the configured auth mode (session: ``ValidateUser``; signature: the first call carries
the signature, so the first query proves it); then per flow, the confirmed check of kingdee.md
§10.3: one ``ExecuteBillQuery`` of ``Limit`` 1 naming the form's keys, which fails with
``业务对象不存在`` for an unknown ``FormId`` (§4.2) and with ``元数据中标识为{key}的字段不存在``
for the first unknown key (§4.2, §10.3); that key is reported, dropped, and the query repeated.
``QueryBusinessInfo`` (§10.3) is not used: its answer is undocumented.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from dingdee_common.doctor import Check, startup_verdict
from dingdee_common.errors import DingdeeError
from dingdee_common.observability.logging import get_logger
from dingdee_common.observability.server import Health
from dingdee_loader.kingdee.client import KingdeeClient, KingdeeConfigError, Lane
from dingdee_loader.metrics import LoaderMetrics
from dingdee_loader.settings import KingdeeSettings

__all__ = ["FormTarget", "kingdee_checks", "startup_check"]
# the Java SDK's session heartbeat (kingdee.md §4.2): any answer but MsgCode 1 proves the login
_HEARTBEAT = ("BD_Currency", "FNUMBER")

_UNKNOWN_KEY = re.compile(r"元数据中标识为(.+?)的字段不存在")
_UNKNOWN_FORM = "业务对象不存在"
log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class FormTarget:
    """One flow's Kingdee form and the keys its mapping sets (key → where in flows.yaml)."""

    flow: str
    form_id: str
    keys: Mapping[str, str]


def _failure(payload: Any) -> str | None:
    """The error text of a failed ExecuteBillQuery (wrapped ``[[{"Result": …}]]``, §4.2)."""
    inner = payload
    while isinstance(inner, list) and len(inner) == 1:
        inner = inner[0]
    if not isinstance(inner, dict):
        return None
    status = (inner.get("Result") or {}).get("ResponseStatus") or {}
    if not isinstance(status, dict) or status.get("IsSuccess", True):
        return None
    errors = status.get("Errors") or []
    texts = [str(e.get("Message")) for e in errors if isinstance(e, dict) and e.get("Message")]
    return "; ".join(texts) or f"MsgCode {status.get('MsgCode')}"


class _Probe:
    def __init__(self, settings: KingdeeSettings) -> None:
        self.settings = settings
        self.client = KingdeeClient(settings, LoaderMetrics.create(CollectorRegistry()))
        self.lane = Lane(0, settings)

    async def query(self, form_id: str, keys: Sequence[str]) -> str | None:
        data = {
            "FormId": form_id,
            "FieldKeys": ",".join(keys),
            "FilterString": "",
            "OrderString": "",
            "TopRowCount": 0,
            "StartRow": 0,
            "Limit": 1,
        }
        try:
            answer = await self.client.call(self.lane, "executebillquery", {"data": data})
        except KingdeeConfigError as exc:
            if exc.error_type == "kingdee_auth":
                raise
            return exc.message  # no permission on this form (MsgCode 2): the form's check says so
        return _failure(answer)


def _unreachable(subject: str, name: str, exc: Exception) -> Check:
    return Check(
        "kingdee",
        subject,
        name,
        "warning",
        f"could not check ({exc}); is DINGDEE_KINGDEE__SERVER_URL reachable? run dingdee doctor "
        "again",
    )


async def _form_checks(probe: _Probe, target: FormTarget) -> list[Check]:
    refused = await _form_refused(probe, target)
    if refused is not None:
        return [refused]
    checks = [Check("kingdee", target.flow, "form", "ok", f"{target.form_id} answers queries")]
    missing, failure = await _missing_keys(probe, target)
    if failure is not None:  # an answer that names no key of ours
        checks.append(
            Check("kingdee", target.flow, "field keys", "error", f"{target.form_id}: {failure}")
        )
    checks += [
        Check(
            "kingdee",
            target.flow,
            f"field {key}",
            "error",
            f"{target.keys[key]} sets {key}, which {target.form_id} does not have: fix the key "
            "in flows.yaml (keys are listed in Kingdee's BOS designer)",
        )
        for key in missing
    ]
    if not missing and failure is None:
        checks.append(
            Check(
                "kingdee",
                target.flow,
                "field keys",
                "ok",
                f"all {len(target.keys)} keys exist on {target.form_id}",
            )
        )
    return checks


async def _form_refused(probe: _Probe, target: FormTarget) -> Check | None:
    """The error when the form does not answer a query of its primary key."""
    pk = probe.settings.primary_key(target.form_id)
    failure = await probe.query(target.form_id, [pk])
    if failure is None:
        return None
    todo = (
        "check target.form_id in flows.yaml"
        if _UNKNOWN_FORM in failure
        else "check the integration user's permissions on the form"
    )
    return Check("kingdee", target.flow, "form", "error", f"{target.form_id}: {failure}: {todo}")


async def _missing_keys(probe: _Probe, target: FormTarget) -> tuple[list[str], str | None]:
    """The target's keys the form does not have (Kingdee names one per refused query), and a
    refusal that names no key of ours."""
    keys = list(target.keys)
    missing: list[str] = []
    while keys:
        failure = await probe.query(target.form_id, keys)
        if failure is None:
            return missing, None
        found = _UNKNOWN_KEY.search(failure)
        named = found.group(1).upper() if found else None
        key = next((k for k in keys if k.upper() == named), None)
        if key is None:
            return missing, failure
        missing.append(key)
        keys.remove(key)
    return missing, None  # every key was missing, and each is reported


async def kingdee_checks(
    settings: KingdeeSettings, targets: Sequence[FormTarget] = ()
) -> list[Check]:
    """Login, then every target's form and keys; stops after a refused login."""
    probe = _Probe(settings)
    mode = settings.auth_mode
    checks: list[Check] = []
    try:
        await probe.client.login(probe.lane)
        if mode == "signature":  # the signature is only checked by a call
            form_id, key = (
                (targets[0].form_id, settings.primary_key(targets[0].form_id))
                if targets
                else _HEARTBEAT
            )
            await probe.query(form_id, [key])
        checks.append(Check("kingdee", settings.acct_id, "login", "ok", f"{mode} mode"))
        for target in targets:
            checks += await _form_checks(probe, target)
    except KingdeeConfigError as exc:  # wrong password, locked user, bad secret, no permission
        checks.append(Check("kingdee", settings.acct_id, "login", "error", exc.message))
    except DingdeeError as exc:
        checks.append(_unreachable(settings.acct_id, "login", exc))
    finally:
        await probe.lane.aclose()
    return checks


async def startup_check(settings: KingdeeSettings, health: Health, stop: asyncio.Event) -> bool:
    """The loader's part of the doctor at start-up: the login (the loader has no flows file).

    While Kingdee refuses the login (a configuration error: wrong password, locked user, bad
    secret) the loader consumes nothing: it is not ready, says why on ``/readyz`` and in one log
    line, and tries again every ``refused_retry_seconds`` until Kingdee accepts it or ``stop``.

    Returns:
        True once the login works, False if stopped first.
    """
    said = None
    while not stop.is_set():
        checks = await kingdee_checks(settings)
        errors = [c for c in checks if c.level == "error"]
        if not errors:
            startup_verdict("loader", checks)
            return True
        line = errors[0].line()
        wait = settings.refused_retry_seconds
        if line != said:
            log.error("loader.kingdee.refused", check=line, action=f"not ready; again in {wait}s")
            said = line
        health.set_not_ready(f"start-up check failed: {line}; consuming nothing, again in {wait}s")
        health.progress()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=wait)
    return False
