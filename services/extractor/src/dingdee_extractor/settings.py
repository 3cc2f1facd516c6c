"""``ExtractorSettings``: everything the extractor reads from the environment (STYLE §3)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from dingdee_common.quota import DEFAULT_MONTHLY_BUDGET
from dingdee_common.settings import HttpServerSettings, RetrySettings, ServiceSettings

__all__ = [
    "DingTalkApp",
    "DingTalkSettings",
    "EventsSettings",
    "ExtractorSettings",
    "OutageSettings",
    "PollSettings",
]


class _Block(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DingTalkApp(_Block):
    """One DingTalk internal app (its Client ID / Client Secret)."""

    app_key: str = Field(min_length=1)
    app_secret: SecretStr
    monthly_call_budget: int | None = Field(
        default=None,
        ge=1,
        description="metered calls a month; the extractor paces itself to it (unset: "
        "DINGDEE_DINGTALK__DEFAULT_MONTHLY_CALL_BUDGET)",
    )
    approvals_per_month: int = Field(
        default=500,
        ge=0,
        description="approvals a month over the app's flows: the planning figure the start-up "
        "budget check (and dingdee doctor) projects the month with",
    )


class DingTalkSettings(_Block):
    """How to reach DingTalk (``DINGDEE_DINGTALK__*``)."""

    base_url: str = "https://oapi.dingtalk.com"
    apps: dict[str, DingTalkApp] = Field(
        description='JSON, e.g. {"main": {"app_key": "...", "app_secret": "..."}}'
    )
    qps: float = Field(
        default=20.0,
        gt=0,
        description="DingTalk's limit per app and API (endpoint path): 20 on the standard "
        "edition (dingtalk.md §5.1); each API has its own token bucket",
    )
    qps_margin: float = Field(
        default=0.05,
        ge=0,
        lt=1,
        description="share of qps left unused, so the calls' jitter never crosses the limit "
        "(0.05: 19 calls a second per API)",
    )
    timeout_seconds: float = Field(default=10.0, gt=0)
    token_refresh_margin_seconds: float = Field(default=600.0, ge=0)
    get_concurrency: int = Field(default=8, ge=1, le=64)
    punish_pause_seconds: float = Field(
        default=300.0,
        gt=0,
        description="how long every call waits after DingTalk's anti-abuse ban answer "
        '({"status":1111,…,"punish":"deny"}); the ban lasts 5 minutes (dingtalk.md §5.1)',
    )
    page_size: int = Field(default=20, ge=1, le=20)
    default_monthly_call_budget: int = Field(
        default=DEFAULT_MONTHLY_BUDGET,
        ge=1,
        description="budget of an app that sets no monthly_call_budget (the standard edition's "
        "allowance)",
    )
    allow_over_budget: bool = Field(
        default=False,
        description="start even when the settings cannot fit an app's budget (polling is still "
        "paced to it)",
    )

    def budget_of(self, app: str) -> int:
        """The monthly call budget of ``app``: its own, else the default."""
        return self.apps[app].monthly_call_budget or self.default_monthly_call_budget


class PollSettings(_Block):
    """Windows, open-instance schedule and sweeps (``DINGDEE_POLL__*``)."""

    interval_seconds: float = Field(default=30.0, gt=0, description="between poll cycles")
    overlap_seconds: float = Field(default=300.0, ge=0, description="re-read before the watermark")
    settle_seconds: float = Field(default=5.0, ge=0, description="stay this far behind now")
    window_max_days: float = Field(default=120.0, gt=0, le=120)
    lookback_max_days: float = Field(default=365.0, gt=0, le=365)
    open_recheck_initial_seconds: float = Field(default=60.0, gt=0)
    open_recheck_factor: float = Field(default=2.0, ge=1)
    open_recheck_max_seconds: float = Field(default=6 * 3600.0, gt=0)
    sweep_interval_seconds: float = Field(
        default=24 * 3600.0, gt=0, description="between compensation sweeps"
    )
    sweep_delay_seconds: float = Field(
        default=3600.0,
        ge=0,
        description="a sweep re-lists creation times once they are this old (listing has settled)",
    )
    sweep_lookback_days: float = Field(
        default=7.0, gt=0, description="a sweep never re-lists creation times older than this"
    )
    budget_max_interval_seconds: float = Field(
        default=24 * 3600.0,
        gt=0,
        description="the longest poll interval a monthly call budget may stretch polling to",
    )
    detail_failures_before_dlq: int = Field(default=3, ge=1)
    listing_cap: int = Field(
        default=10_000,
        ge=40,
        le=10_000,
        description="ids one listids query pages through (DingTalk: 10 000, dingtalk.md §2.1); "
        "a window that reaches it is halved (lower only to test that)",
    )
    code_check_interval_seconds: float = Field(
        default=24 * 3600.0,
        gt=0,
        description="while a flow has listed nothing, how often the form-schema API is asked "
        "whether it knows the flow's process_code",
    )


class EventsSettings(_Block):
    """Stream-mode approval events (``DINGDEE_EVENTS__*``): the trigger; polling the safety net."""

    enabled: bool = False
    base_url: str = "https://api.dingtalk.com"
    poll_interval_seconds: float = Field(
        default=600.0,
        gt=0,
        description="safety-net tick while events are on; a tick calls DingTalk only when a "
        "gap closed, a re-check or a verification is due",
    )
    verify_interval_seconds: float = Field(
        default=14 * 86_400.0,
        gt=0,
        le=100 * 86_400.0,
        description="each flow's creation times are listed once this often (catches events "
        "DingTalk dropped while connected); within the 120-day window rule",
    )
    verify_sample: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="share of an app's flows each verification interval lists (1: all); the "
        "flows take turns, each is listed at least every interval / share, gaps are always "
        "listed in full, and a sampled listing that finds an approval no event reported lists "
        "every flow at once (DESIGN §5)",
    )
    gap_margin_seconds: float = Field(
        default=60.0,
        ge=0,
        description="creation times this close to a connected interval's edges count as gap",
    )
    gap_list_min_seconds: float = Field(
        default=300.0,
        ge=0,
        description="a gap (disconnection, failed event, restart) longer than this is listed as "
        "soon as it closes; shorter ones (redelivered by DingTalk) wait for the verification",
    )
    gap_max_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="a gap open this long is listed while it lasts (polling takes over)",
    )
    reconnect_max_seconds: float = Field(default=60.0, gt=0)
    open_recheck_initial_seconds: float = Field(
        default=7 * 86_400.0,
        gt=0,
        description="with events on, open instances are re-fetched this late and no more often "
        "(start and finish events tell first; this only catches a lost finish event)",
    )


class OutageSettings(_Block):
    """Waiting out DingTalk being unavailable (``DINGDEE_OUTAGE__*``): for as long as it takes.

    A cycle whose DingTalk calls outlive ``retry`` stops at its last checkpoint; the flow then
    runs it again after a capped, fully jittered exponential backoff (never less than a
    throttling answer asked for). There is no attempt cap and no deadline.
    """

    initial_backoff_seconds: float = Field(default=1.0, gt=0)
    max_backoff_seconds: float = Field(default=60.0, gt=0)

    def policy(self) -> RetrySettings:
        """The backoff as ``dingdee_common.retry`` reads it (its cap and deadline unused)."""
        return RetrySettings(
            initial_backoff_seconds=self.initial_backoff_seconds,
            max_backoff_seconds=self.max_backoff_seconds,
        )


class ContactSourceSettings(BaseModel):
    """DingTalk contact sources (``DINGDEE_REFDATA__*``, issue #14)."""

    min_interval_seconds: float = Field(
        default=60.0,
        ge=0,
        description="a requested full read of a contact source no sooner than this after the last",
    )


class ExtractorSettings(ServiceSettings):
    """Built once by ``__main__`` and passed to every component."""

    flows_file: Path = Path("config/flows.yaml")
    refdata: ContactSourceSettings = ContactSourceSettings()
    group_id: str = "dingdee-extractor"
    dingtalk: DingTalkSettings
    poll: PollSettings = PollSettings()
    events: EventsSettings = EventsSettings()
    retry: RetrySettings = RetrySettings(max_attempts=5, deadline_seconds=60)
    outage: OutageSettings = OutageSettings()
    http: HttpServerSettings = HttpServerSettings(port=9401)
