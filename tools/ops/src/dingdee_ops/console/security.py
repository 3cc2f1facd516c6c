"""Who is asking, and may they: sign-in (token or OIDC proxy), roles, CSRF, security headers.

Every route of the console except ``/signin`` and ``/static`` goes through :func:`guard`: without
a user it answers 401, a POST without the user's CSRF token 403, an operator-only route asked by
a viewer 403. Every answer carries the security headers (a CSP that allows no script at all).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlencode

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware

from dingdee_ops.console.settings import ConsoleBlock

__all__ = [
    "COOKIE",
    "OPERATOR",
    "SECURITY_HEADERS",
    "VIEWER",
    "Identity",
    "Signer",
    "guard",
    "identity",
    "security_headers",
    "sign_in",
]

Role = Literal["viewer", "operator"]
VIEWER: Role = "viewer"
OPERATOR: Role = "operator"
COOKIE = "dingdee_console"
IDENTITY_KEY = web.RequestKey("identity", object)
PUBLIC_PREFIXES = ("/static/", "/signin")
SECURITY_HEADERS = {
    # no script, no inline style, no frames; forms post back to the console only
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Identity:
    """A signed-in user; ``nonce`` ties the CSRF token to one session."""

    user: str
    role: Role
    nonce: str = ""

    @property
    def operator(self) -> bool:
        return self.role == OPERATOR


class Signer:
    """HMAC-SHA256 over the session cookie and the CSRF token, with the console's secret."""

    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def _mac(self, data: bytes) -> str:
        digest = hmac.new(self._key, data, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def cookie(self, who: Identity, ttl_seconds: float) -> str:
        body = orjson.dumps(
            {"u": who.user, "r": who.role, "n": who.nonce, "e": int(time.time() + ttl_seconds)}
        )
        data = base64.urlsafe_b64encode(body).decode().rstrip("=")
        return f"{data}.{self._mac(data.encode())}"

    def read_cookie(self, value: str) -> Identity | None:
        data, _, mac = value.partition(".")
        if not mac or not hmac.compare_digest(mac, self._mac(data.encode())):
            return None
        try:
            body = orjson.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
        except (ValueError, orjson.JSONDecodeError):
            return None
        if body.get("e", 0) < time.time() or body.get("r") not in (VIEWER, OPERATOR):
            return None
        return Identity(str(body["u"]), body["r"], str(body.get("n", "")))

    def csrf(self, who: Identity) -> str:
        return self._mac(f"csrf|{who.user}|{who.role}|{who.nonce}".encode())


def _same(given: str | None, secret: str | None) -> bool:
    return given is not None and secret is not None and hmac.compare_digest(given, secret)


def _token_role(config: ConsoleBlock, given: str) -> Role | None:
    if config.token is not None and _same(given, config.token.get_secret_value()):
        return OPERATOR
    if config.viewer_token is not None and _same(given, config.viewer_token.get_secret_value()):
        return VIEWER
    return None


def _loopback_peer(request: web.Request) -> bool:
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


def _proxy_identity(config: ConsoleBlock, request: web.Request) -> Identity | None:
    """The user the OIDC proxy vouches for; ``None`` when the request did not come through it."""
    secret = config.proxy_secret.get_secret_value() if config.proxy_secret else None
    if secret is not None and not _same(request.headers.get(config.proxy_secret_header), secret):
        return None
    if secret is None and not _loopback_peer(request):
        return None  # the sidecar pattern: only the proxy in the same pod reaches loopback
    user = request.headers.get(config.email_header) or request.headers.get(config.user_header)
    if not user:
        return None
    groups = {g.strip() for g in request.headers.get(config.groups_header, "").split(",")}
    if groups & set(config.operator_groups):
        return Identity(user, OPERATOR)
    if not config.viewer_groups or groups & set(config.viewer_groups):
        return Identity(user, VIEWER)
    return None


def identity(request: web.Request) -> Identity:
    """The user :func:`guard` let through (only call it inside a guarded route)."""
    who = request.get(IDENTITY_KEY)
    assert isinstance(who, Identity)  # noqa: S101 - guard() sets it on every guarded route
    return who


def sign_in(config: ConsoleBlock, signer: Signer, request: web.Request) -> web.StreamResponse:
    """``GET /signin?token=…&next=/path``: a valid token becomes a session cookie."""
    role = _token_role(config, request.query.get("token", "")) if config.auth == "token" else None
    if role is None:
        raise web.HTTPUnauthorized(text=_UNAUTHORIZED, content_type="text/html")
    target = request.query.get("next", "/")
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        target = "/"  # never an open redirect
    response = web.HTTPSeeOther(target)
    who = Identity("local-" + role, role, secrets.token_urlsafe(16))
    response.set_cookie(
        COOKIE,
        signer.cookie(who, config.session_hours * 3600),
        max_age=int(config.session_hours * 3600),
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/",
    )
    raise response


_UNAUTHORIZED = (
    "<!doctype html><meta charset=utf-8><title>401</title>"
    "<p>需要登录 · Sign-in required. Open the console link printed by <code>make run</code> "
    "(token mode) or sign in through the company login (proxy mode).</p>"
)


def _authenticate(config: ConsoleBlock, signer: Signer, request: web.Request) -> Identity | None:
    if config.auth == "proxy":
        return _proxy_identity(config, request)
    cookie = request.cookies.get(COOKIE)
    return signer.read_cookie(cookie) if cookie else None


def guard(config: ConsoleBlock, signer: Signer, operator_paths: tuple[str, ...]) -> Middleware:
    """The middleware that authenticates, checks the role and the CSRF token of every request."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(PUBLIC_PREFIXES):
            return await handler(request)
        if config.auth == "token" and "token" in request.query:
            query = urlencode({"token": request.query["token"], "next": request.path})
            raise web.HTTPSeeOther(f"/signin?{query}")
        who = _authenticate(config, signer, request)
        if who is None:
            raise web.HTTPUnauthorized(text=_UNAUTHORIZED, content_type="text/html")
        if request.method not in ("GET", "HEAD"):
            form = await request.post()
            given = form.get("csrf")
            if not isinstance(given, str) or not _same(given, signer.csrf(who)):
                raise web.HTTPForbidden(text="CSRF token missing or wrong · 缺少或错误的 CSRF 令牌")
        if request.path.startswith(operator_paths) and not who.operator:
            raise web.HTTPForbidden(text="operators only · 仅限操作员 (operator)")
        request[IDENTITY_KEY] = who
        return await handler(request)

    return middleware


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The security headers on every answer, errors included."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    response.headers.update(SECURITY_HEADERS)
    return response
