"""The DingTalk part of ``dingdee doctor``, also run by the extractor at start-up.

Per app: the credentials give a token (old host, as polling uses it), the app may read approvals
(one ``listids`` page), Stream mode opens when events are on (``connections/open``), and the
configured polling fits the monthly budget (:func:`dingdee_common.doctor.budget_check`). Per
flow: the ``process_code`` exists (the form-schema API, dingtalk.md §9.5.1) and every component
and table column the mapping reads is in the template's schema with a type it can be read as
(the comparison itself: :mod:`dingdee_extractor.schemacheck`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from dingdee_common.doctor import AppPlan, Check, budget_check, startup_verdict
from dingdee_common.errors import DingdeeError, FatalError
from dingdee_common.schedule import Schedule
from dingdee_extractor.dingtalk.client import DingTalkClient
from dingdee_extractor.flows import FlowSource
from dingdee_extractor.schemacheck import Read, component_checks
from dingdee_extractor.settings import ExtractorSettings

__all__ = ["app_plans", "dingtalk_checks", "process_code_error", "startup_check"]

SCHEMA_PATH = "/v1.0/workflow/forms/schemas/processCodes"
# v1.0 throttling and quota codes (dingtalk.md §5.1): they say nothing about the process_code
_THROTTLED = tuple(
    f"Forbidden.AccessDenied.{c}" for c in ("QpsLimit", "QpmLimit", "ApiCountLimitForOrg")
)


def app_plans(settings: ExtractorSettings, sources: Sequence[FlowSource]) -> list[AppPlan]:
    """What each app's flows spend, as the extractor will run them."""
    plans = []
    events = settings.events.enabled
    default = settings.events.poll_interval_seconds if events else settings.poll.interval_seconds
    for app in sorted({s.app for s in sources}):
        mine = [s for s in sources if s.app == app]
        plans.append(
            AppPlan(
                app=app,
                flows=len(mine),
                events=events,
                interval_s=min(s.poll_interval_seconds or default for s in mine),
                max_interval_s=settings.poll.budget_max_interval_seconds,
                sweep_interval_s=settings.poll.sweep_interval_seconds,
                approvals_per_month=settings.dingtalk.apps[app].approvals_per_month,
                budget=settings.dingtalk.budget_of(app),
                allow_over_budget=settings.dingtalk.allow_over_budget,
                verify_interval_s=settings.events.verify_interval_seconds,
                recheck=Schedule(
                    settings.poll.interval_seconds,
                    settings.poll.open_recheck_initial_seconds,
                    settings.poll.open_recheck_factor,
                    settings.poll.open_recheck_max_seconds,
                ),
            )
        )
    return plans


class _V1:
    """The v1.0 host calls the doctor makes (token, schema, Stream ``connections/open``)."""

    def __init__(self, settings: ExtractorSettings) -> None:
        self._settings = settings
        self._http = httpx.AsyncClient(
            base_url=settings.events.base_url.rstrip("/"),
            timeout=settings.dingtalk.timeout_seconds,
        )
        self._tokens: dict[str, str] = {}

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _token(self, app: str) -> str:
        if app not in self._tokens:
            creds = self._settings.dingtalk.apps[app]
            body = {"appKey": creds.app_key, "appSecret": creds.app_secret.get_secret_value()}
            response = await self._http.post("/v1.0/oauth2/accessToken", json=body)
            data = response.json()
            if response.status_code != 200 or "accessToken" not in data:
                raise FatalError(f"v1.0 accessToken: {data.get('code')} {data.get('message')}")
            self._tokens[app] = str(data["accessToken"])
        return self._tokens[app]

    async def schema(self, app: str, process_code: str) -> tuple[int, dict[str, Any]]:
        headers = {"x-acs-dingtalk-access-token": await self._token(app)}
        params = {"processCode": process_code}
        response = await self._http.get(SCHEMA_PATH, params=params, headers=headers)
        data = response.json()
        return response.status_code, data if isinstance(data, dict) else {}

    async def open_stream(self, app: str) -> tuple[int, str]:
        creds = self._settings.dingtalk.apps[app]
        body = {
            "clientId": creds.app_key,
            "clientSecret": creds.app_secret.get_secret_value(),
            "subscriptions": [{"type": "EVENT", "topic": "*"}],
            "ua": "dingdee-doctor",
        }
        response = await self._http.post("/v1.0/gateway/connections/open", json=body)
        return response.status_code, response.text[:200]


def _unreachable(part: str, subject: str, name: str, exc: Exception) -> Check:
    return Check(
        part,
        subject,
        name,
        "warning",
        f"could not check ({type(exc).__name__}: {exc}); is the endpoint reachable? run "
        "dingdee doctor again",
    )


async def _app_checks(
    client: DingTalkClient, v1: _V1, settings: ExtractorSettings, app: str, full: bool
) -> tuple[list[Check], bool]:
    """Token (and, in full, Stream mode); the bool says whether the token works."""
    try:
        await client.token(app)
    except FatalError as exc:
        return [Check("dingtalk", app, "access token", "error", exc.message)], False
    except (DingdeeError, httpx.HTTPError) as exc:
        return [_unreachable("dingtalk", app, "access token", exc)], False
    checks = [Check("dingtalk", app, "access token", "ok", "the app key and secret give a token")]
    if full and settings.events.enabled:
        try:
            status, text = await v1.open_stream(app)
        except httpx.HTTPError as exc:
            checks.append(_unreachable("dingtalk", app, "stream mode", exc))
        else:
            checks.append(
                Check("dingtalk", app, "stream mode", "ok", "connections/open answers 200")
                if status == 200
                else Check(
                    "dingtalk",
                    app,
                    "stream mode",
                    "error",
                    f"connections/open answered HTTP {status} {text}: enable Stream mode "
                    "(推送方式: Stream 模式) for the app in the developer console, or set "
                    "DINGDEE_EVENTS__ENABLED=false",
                )
            )
    return checks, True


async def _read_permission(client: DingTalkClient, source: FlowSource) -> Check:
    now = int(time.time() * 1000)
    try:
        await client.listids(source.app, source.process_code, now - 3_600_000, now, 0)
    except FatalError as exc:
        return Check("dingtalk", source.flow, "approval read", "error", exc.message)
    except DingdeeError as exc:
        if exc.code and exc.code.startswith("errcode_"):
            return Check(
                "dingtalk",
                source.flow,
                "approval read",
                "error",
                f"listids refused ({exc.code}: {exc.message}): grant the app the approval "
                "read permission (审批 › 读取审批实例) in the developer console",
            )
        return _unreachable("dingtalk", source.flow, "approval read", exc)
    return Check("dingtalk", source.flow, "approval read", "ok", "listids answers")


async def _schema_checks(v1: _V1, source: FlowSource, reads: Sequence[Read] | None) -> list[Check]:
    flow, code = source.flow, source.process_code
    try:
        status, data = await v1.schema(source.app, code)
    except (DingdeeError, httpx.HTTPError, ValueError) as exc:
        return [_unreachable("dingtalk", flow, "process_code", exc)]
    if status >= 500 or str(data.get("code")).startswith(_THROTTLED):
        # DingTalk busy, throttling or out of quota: says nothing about the code
        why = DingdeeError(f"HTTP {status} {data.get('code')}: {data.get('message')}")
        return [_unreachable("dingtalk", flow, "process_code", why)]
    if status != 200 or not isinstance(data.get("result"), dict):
        reason = f"{data.get('code')}: {data.get('message')}"
        todo = {
            "formNotExist": "check dingtalk.process_code in flows.yaml (DingTalk lists nothing "
            "for an unknown code, silently)",
            "aflowProcessCodeIsError": "the template was deleted; check dingtalk.process_code",
            "noPermission": "grant the app Workflow.Form.Read (审批表单读权限)",
        }.get(str(data.get("code")), "grant the app Workflow.Form.Read and check the code")
        return [
            Check(
                "dingtalk",
                flow,
                "process_code",
                "error",
                f"the form-schema API refuses {code} (HTTP {status} {reason}): {todo}",
            )
        ]
    result = data["result"]
    checks = [
        Check("dingtalk", flow, "process_code", "ok", f"{code} is {result.get('name')!r}"),
    ]
    if reads is not None:
        checks += component_checks(flow, code, result, reads)
    return checks


async def process_code_error(settings: ExtractorSettings, source: FlowSource) -> str | None:
    """Why the form-schema API refuses ``source``'s process_code, or None when it knows it (or
    cannot be asked now): the doctor's check, for a poller whose listing stays empty."""
    v1 = _V1(settings)
    try:
        checks = await _schema_checks(v1, source, None)
    finally:
        await v1.aclose()
    return next((c.message for c in checks if c.level == "error"), None)


async def dingtalk_checks(
    settings: ExtractorSettings,
    sources: Sequence[FlowSource],
    client: DingTalkClient,
    reads: Mapping[str, Sequence[Read]] | None = None,
    *,
    full: bool = True,
) -> list[Check]:
    """Every DingTalk check of ``sources``; ``reads`` (flow → what its mapping reads) enables the
    component checks; ``full`` adds the checks that cost a metered call or open a stream ticket
    (approval read, Stream mode), which the extractor's own start-up leaves to its first cycle."""
    v1 = _V1(settings)
    checks: list[Check] = []
    try:
        usable: set[str] = set()
        for app in sorted({s.app for s in sources}):
            app_checks, ok = await _app_checks(client, v1, settings, app, full)
            checks += app_checks
            if ok:
                usable.add(app)
        for source in sources:
            if source.app not in usable:
                continue
            flow_reads = None if reads is None else reads.get(source.flow, ())
            checks += await _schema_checks(v1, source, flow_reads)
            if full:
                checks.append(await _read_permission(client, source))
    finally:
        await v1.aclose()
    checks += [budget_check(plan) for plan in app_plans(settings, sources)]
    return checks


async def startup_check(
    settings: ExtractorSettings, sources: Sequence[FlowSource], client: DingTalkClient
) -> None:
    """The extractor's part of the doctor at start-up: tokens, templates, budget.

    What each mapping reads is the transformer's to know, so the start-up check does not look at
    it; ``dingdee doctor`` (the operator tools, above every service) does.

    Raises:
        FatalError: one line naming the first error (a budget that cannot fit included, unless
            ``DINGDEE_DINGTALK__ALLOW_OVER_BUDGET``).
    """
    checks = await dingtalk_checks(settings, sources, client, None, full=False)
    startup_verdict("extractor", checks)
