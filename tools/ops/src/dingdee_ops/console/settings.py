"""The console's settings: ``DINGDEE_CONSOLE__*`` beside the Kafka and ops-port settings every
process reads (``DINGDEE_KAFKA__*``, ``DINGDEE_HTTP__*``, ``DINGDEE_FLOWS_FILE``).

Two ways to sign in (docs/operating.md "Console"):

* ``token`` (local use, ``make run``): ``?token=…`` once, then a signed session cookie;
  ``token`` makes an operator, ``viewer_token`` (optional) a viewer.
* ``proxy`` (clusters): an OIDC proxy (oauth2-proxy) in the same pod passes the user in trusted
  headers; the console listens on loopback only, so nothing reaches it except through the proxy,
  and, when ``proxy_secret`` is set, also refuses every request without that shared secret.
"""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from dingdee_common.settings import ServiceSettings

__all__ = ["ConsoleBlock", "ConsoleSettings"]


class ConsoleBlock(BaseModel):
    """``DINGDEE_CONSOLE__*``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    port_file: Path | None = Field(default=None, description="write the bound UI port here")
    auth: Literal["token", "proxy"] = "token"
    token: SecretStr | None = Field(default=None, description="token mode: signs in an operator")
    viewer_token: SecretStr | None = Field(default=None, description="token mode: a viewer")
    session_secret: SecretStr = Field(
        default_factory=lambda: SecretStr(secrets.token_urlsafe(32)),
        description="signs session cookies and CSRF tokens (random per process by default)",
    )
    session_hours: float = Field(default=12.0, gt=0)
    proxy_secret: SecretStr | None = Field(
        default=None, description="proxy mode: the value the proxy sends in proxy_secret_header"
    )
    proxy_secret_header: str = "X-Dingdee-Proxy-Secret"  # noqa: S105 - a header name
    user_header: str = "X-Forwarded-User"
    email_header: str = "X-Forwarded-Email"
    groups_header: str = "X-Forwarded-Groups"
    operator_groups: list[str] = Field(default_factory=lambda: ["dingdee-operators"])
    viewer_groups: list[str] = Field(
        default_factory=list, description="empty: every signed-in user may view"
    )
    refresh_seconds: float = Field(default=15.0, gt=0, description="how often Kafka is re-read")
    window_hours: float = Field(default=24.0, gt=0, description="how far back the pages look")
    services: dict[str, str] = Field(
        default_factory=dict, description="service name → ops base URL (/readyz is shown)"
    )
    trace_url: str | None = Field(
        default=None, description="tracing UI link with {trace_id}, e.g. https://jaeger/trace/…"
    )
    doctor_report: Path | None = Field(
        default=None, description="a file holding `dingdee doctor --json` output, shown on /flows"
    )
    reconcile_report: Path | None = Field(
        default=None, description="a file holding `dingdee reconcile --json` output"
    )

    @model_validator(mode="after")
    def _safe(self) -> ConsoleBlock:
        if self.auth == "token" and self.token is None:
            raise ValueError("auth token needs DINGDEE_CONSOLE__TOKEN (make run generates one)")
        if self.auth == "proxy" and self.proxy_secret is None and not _loopback(self.host):
            raise ValueError(
                "auth proxy on a non-loopback host needs DINGDEE_CONSOLE__PROXY_SECRET: "
                "otherwise anyone reaching the port could claim any user"
            )
        return self


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ConsoleSettings(ServiceSettings):
    """Everything ``dingdee console`` reads from the environment."""

    console: ConsoleBlock  # no default: token mode without a token must not start
    flows_file: Path = Path("config/flows.yaml")
