"""Signing in with the admin key (rate-limited per client address through the shared Redis) and signing out."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import RedirectResponse, Response

from cg_web.access import LOGIN_PATH, LOGOUT_PATH, sign_in, sign_out
from cg_web.rendering import render
from cg_web.resources import ResourcesDep

router = APIRouter()


def _safe_next(target: str | None) -> str:
    """Only a path of this dashboard: never another site (an open redirect)."""
    if target and target.startswith("/dashboard") and "//" not in target and "\\" not in target:
        return target
    return "/dashboard"


@router.get(LOGIN_PATH)
async def login_page(request: Request, next: str | None = None) -> Response:
    return render(request, "login.html", {"next": _safe_next(next)})


@router.post(LOGIN_PATH)
async def login(
    request: Request,
    resources: ResourcesDep,
    api_key: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=512)] = "/dashboard",
) -> Response:
    client = request.client.host if request.client else "unknown"
    decision = await resources.login_limiter.check("web-login:" + client)
    if not decision.admitted:
        wait = decision.retry_after_secs or 1
        return render(
            request,
            "login.html",
            {"next": _safe_next(next), "error": f"Too many sign-in attempts. Try again in {wait} s."},
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            headers={"Retry-After": str(wait)},
        )
    if not hmac.compare_digest(api_key.encode(), resources.settings.api_key.encode()):
        return render(
            request,
            "login.html",
            {"next": _safe_next(next), "error": "That is not the admin key."},
            status_code=status.HTTP_401_UNAUTHORIZED,
        )
    sign_in(request)
    return RedirectResponse(_safe_next(next), status_code=status.HTTP_303_SEE_OTHER)


@router.post(LOGOUT_PATH)
async def logout(request: Request) -> Response:
    sign_out(request)
    return RedirectResponse(LOGIN_PATH, status_code=status.HTTP_303_SEE_OTHER)
