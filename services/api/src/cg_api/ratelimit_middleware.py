"""ASGI middleware that asks the shared token bucket before any non-exempt request reaches a route."""

from __future__ import annotations

import json

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from cg_api.auth import API_KEY_HEADER, is_admin_key
from cg_api.resources import Resources
from cg_api.unavailable import SENTENCES
from cg_common.ratelimit import Decision


class RateLimitMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware) so that the check adds one Redis round trip and nothing else."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        resources: Resources = scope["app"].state.resources
        settings = resources.settings
        if not settings.rate_limit_enabled or _is_exempt(scope["path"], settings.rate_limit_exempt):
            await self.app(scope, receive, send)
            return
        decision = await resources.limiter.check(_client_id(scope, settings.api_key))
        if decision.admitted:
            await self.app(scope, receive, send)
            return
        await _refuse(decision, send)


def _is_exempt(path: str, exempt: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in exempt)


def _client_id(scope: Scope, admin_key: str) -> str:
    """The admin key names the bucket when it is right; anything else counts against the caller's IP, so that
    inventing keys cannot mint fresh buckets."""
    candidate = Headers(scope=scope).get(API_KEY_HEADER)
    if is_admin_key(candidate, admin_key):
        return "key:" + admin_key
    client = scope.get("client")
    return "ip:" + (client[0] if client else "unknown")


async def _refuse(decision: Decision, send: Send) -> None:
    if decision.degraded:  # Redis is away and RATE_LIMIT_FAIL_MODE=closed: a 503 like any missing dependency's
        status = 503
        answer = {"detail": f"{SENTENCES['redis']} (the rate limiter needs it)", "dependency": "redis"}
    else:
        status = 429
        answer = {"detail": f"rate limit exceeded; retry after {decision.retry_after_secs} s"}
    body = json.dumps(answer).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(max(1, decision.retry_after_secs)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
