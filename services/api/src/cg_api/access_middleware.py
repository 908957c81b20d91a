"""Every request passes here before anything reads its body: exempt paths go straight through (no credential is
checked); others are counted against their credential's rate-limit bucket (the client address's when there is no
valid credential), then refused with 401 without a valid credential, or 403 without the scope the path needs.
The resolved `Principal` is left in the request's state for the routes and the audit log."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from cg_api.credentials import API_KEY_HEADER, SessionEndedError
from cg_api.principal import Principal, required_scope
from cg_api.resources import Resources
from cg_api.unavailable import SENTENCES, unavailable_response
from cg_common.client_address import client_address
from cg_common.ratelimit import Decision

PRINCIPAL = "principal"


class AccessMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware): a request with a known credential costs a dictionary lookup and one Redis
    round trip here, nothing more."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        resources: Resources = scope["app"].state.resources
        settings = resources.settings
        path, method = scope["path"], scope["method"]
        if _is_exempt(path, settings.rate_limit_exempt):
            await self.app(scope, receive, send)
            return
        try:
            principal = await resources.credentials.resolve(Headers(scope=scope))
        except SessionEndedError:
            await _answer(send, 401, {"detail": "the dashboard session has ended; sign in again"})
            return
        except (PoolTimeout, psycopg.OperationalError):  # outside the routes, so the app's handlers do not see it
            await unavailable_response("postgres")(scope, receive, send)
            return
        if settings.rate_limit_enabled:
            if principal is None:
                bucket, rpm, burst = "ip:" + client_address(scope, settings.trusted_networks), None, None
            else:
                bucket, rpm, burst = principal.bucket, principal.rpm, principal.burst
            decision = await resources.limiter.check(bucket, rpm=rpm, burst=burst)
            if not decision.admitted:
                await _refuse(decision, send)
                return
        if principal is None:
            await _answer(
                send,
                401,
                {"detail": f"missing or wrong credential: send an API token or the admin key in {API_KEY_HEADER}"},
                {"www-authenticate": API_KEY_HEADER},
            )
            return
        needed = required_scope(method, path)
        if not principal.may(needed):
            await _answer(send, 403, {"detail": f"{principal.name} lacks the '{needed}' scope this request needs"})
            return
        scope.setdefault("state", {})[PRINCIPAL] = principal
        await self.app(scope, receive, send)


def principal_of(scope: Scope) -> Principal | None:
    principal: Principal | None = scope.get("state", {}).get(PRINCIPAL)
    return principal


def _is_exempt(path: str, exempt: tuple[str, ...]) -> bool:
    return path in exempt


async def _refuse(decision: Decision, send: Send) -> None:
    if decision.degraded:  # Redis is away and RATE_LIMIT_FAIL_MODE=closed: a 503 like any missing dependency's
        body = {"detail": f"{SENTENCES['redis']} (the rate limiter needs it)", "dependency": "redis"}
        await _answer(send, 503, body, {"retry-after": str(max(1, decision.retry_after_secs))})
    else:
        body = {"detail": f"rate limit exceeded; retry after {decision.retry_after_secs} s"}
        await _answer(send, 429, body, {"retry-after": str(max(1, decision.retry_after_secs))})


async def _answer(send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    payload = json.dumps(body).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw_headers += [(name.encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})
