"""Access tokens per (app, host) on the sandbox clock (contract §1.3, §1.4, §7.1).

While a token is valid, asking again returns the same token and extends it by the TTL; after
expiry a new token is issued and the old one is rejected. Revoked tokens are rejected at once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["TOKEN_TTL_MS", "TokenStore", "Verdict"]

TOKEN_TTL_MS = 7_200_000
Verdict = Literal["ok", "missing", "invalid", "expired"]


@dataclass
class TokenStore:
    """Issued tokens. ``tokens`` maps (app key, host) to (token, expiry ms)."""

    tokens: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)
    issued: dict[str, tuple[str, str]] = field(default_factory=dict)  # token -> (app, host)

    def issue(self, app_key: str, host: str, now_ms: int) -> str:
        """The app's token for ``host``: the current one extended, or a new one after expiry.

        Called by the token endpoints of both hosts; never raises.
        """
        token, expires = self.tokens.get((app_key, host), ("", 0))
        if not token or expires <= now_ms or token in self.revoked:
            token = secrets.token_hex(16)
            self.issued[token] = (app_key, host)
        self.tokens[(app_key, host)] = (token, now_ms + TOKEN_TTL_MS)
        return token

    def check(
        self, token: str | None, host: str, now_ms: int, *, cross_host: bool = True
    ) -> tuple[Verdict, str | None]:
        """Judge a presented token; returns the verdict and, when ``ok``, the app key."""
        if not token:
            return "missing", None
        owner = self.issued.get(token)
        if owner is None or token in self.revoked or (owner[1] != host and not cross_host):
            return "invalid", None
        current, expires = self.tokens.get(owner, ("", 0))
        if current != token or expires <= now_ms:
            return "expired", None
        return "ok", owner[0]

    def revoke(self, app_key: str | None = None) -> int:
        """Revoke the current tokens (of one app or all); returns how many were revoked."""
        chosen = [t for (app, _), (t, _) in self.tokens.items() if app_key in (None, app)]
        self.revoked.update(chosen)
        return len(chosen)
