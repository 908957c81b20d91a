"""Who may do what: the signed cookie, the CSRF token it carries, and the guard every route passes through.

The cookie holds the person's session as the api keeps it (its secret, name and scopes), never the key or token
they signed in with; the api ends the session on sign-out, on revocation of the token and when API_KEY changes,
after which every call made with it is refused and the person is signed out here too.

The guard is an app-wide dependency, so a route added later is covered without anyone remembering to add it:
every POST/PATCH/PUT/DELETE must carry the session's CSRF token (form field or `X-CSRF-Token` header) and, but for
signing in and out, come from someone signed in whose session may change things (the admin key or an admin token);
every page needs someone signed in unless DASHBOARD_PUBLIC is true.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from typing import Any

from fastapi import Request

from cg_web.settings import WebSettings

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
LOGIN_PATH = "/dashboard/login"
LOGOUT_PATH = "/dashboard/logout"
# Reachable without signing in, whatever DASHBOARD_PUBLIC says.
OPEN_PATHS = frozenset({"/", "/healthz", LOGIN_PATH})
# Pages about who may do what, and where alerts are sent: never public, whatever DASHBOARD_PUBLIC says.
SIGNED_IN_ONLY = ("/dashboard/access", "/dashboard/audit", "/dashboard/webhooks")
# Mutations allowed without being signed in (they still need the CSRF token).
ANONYMOUS_MUTATIONS = frozenset({LOGIN_PATH, LOGOUT_PATH})


class SignInRequiredError(Exception):
    """The request needs a signed-in admin."""


class ReadOnlyError(Exception):
    """A change asked for by someone signed in with a read-only token."""


class CsrfError(Exception):
    """A mutating request without the session's CSRF token."""


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def masked_csrf(request: Request) -> str:
    """The session's token under a fresh one-time pad: pages are compressed, and a secret that repeats byte for byte
    in compressed pages next to reflected input can be guessed from their sizes (BREACH)."""
    token = csrf_token(request).encode()
    pad = secrets.token_bytes(len(token))
    return base64.urlsafe_b64encode(pad + bytes(a ^ b for a, b in zip(pad, token, strict=True))).decode()


def _unmask(sent: str) -> bytes:
    try:
        raw = base64.b64decode(sent.encode(), altchars=b"-_", validate=True)
    except (ValueError, binascii.Error):
        return b""
    half = len(raw) // 2
    if not half or len(raw) % 2:
        return b""
    return bytes(a ^ b for a, b in zip(raw[:half], raw[half:], strict=True))


def session_of(request: Request) -> str | None:
    """The api session's secret, for the api calls made for this person."""
    session = request.session.get("session")
    return session if isinstance(session, str) else None


def is_signed_in(request: Request) -> bool:
    return session_of(request) is not None


def can_change(request: Request) -> bool:
    scopes = request.session.get("scopes")
    return is_signed_in(request) and isinstance(scopes, list) and "admin" in scopes


def who(request: Request) -> str | None:
    name = request.session.get("name")
    return name.removeprefix("dashboard: ") if isinstance(name, str) else None


def sign_in(request: Request, opened: dict[str, Any]) -> None:
    """A fresh cookie (and CSRF token) for the session the api opened, so that a CSRF token known before signing
    in is worth nothing after."""
    request.session.clear()
    request.session["session"] = opened["session"]
    request.session["name"] = opened["name"]
    request.session["scopes"] = list(opened["scopes"])
    request.session["csrf"] = secrets.token_urlsafe(32)


def sign_out(request: Request) -> None:
    request.session.clear()


async def guard(request: Request) -> None:
    settings: WebSettings = request.app.state.settings
    path = request.url.path
    if request.method not in SAFE_METHODS:
        await _check_csrf(request)
        if path in ANONYMOUS_MUTATIONS:
            return
        if not is_signed_in(request):
            raise SignInRequiredError
        if not can_change(request):
            raise ReadOnlyError
    elif (
        path not in OPEN_PATHS
        and not is_signed_in(request)
        and (not settings.dashboard_public or path.startswith(SIGNED_IN_ONLY))
    ):
        raise SignInRequiredError


async def _check_csrf(request: Request) -> None:
    expected = request.session.get("csrf")
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()  # cached by Starlette: the route's Form(...) parameters read it again
        field = form.get(CSRF_FIELD)
        sent = field if isinstance(field, str) else None
    if not isinstance(expected, str) or sent is None or not hmac.compare_digest(_unmask(sent), expected.encode()):
        raise CsrfError
