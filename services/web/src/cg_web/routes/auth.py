"""Signing in with the admin key or an admin/read token (rate-limited per client address through the shared Redis;
the api checks the credential and opens a session it keeps) and signing out (the api ends the session)."""

from __future__ import annotations

import contextlib
from typing import Annotated

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import RedirectResponse, Response

from cg_common.client_address import client_address
from cg_web.access import LOGIN_PATH, LOGOUT_PATH, session_of, sign_in, sign_out
from cg_web.api_client import ApiError
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
    client = client_address(request.scope, resources.settings.trusted_networks)
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
    try:
        opened = await resources.api.open_session(api_key.strip())
    except ApiError as error:
        if error.status != status.HTTP_401_UNAUTHORIZED:
            raise
        return render(
            request,
            "login.html",
            {"next": _safe_next(next), "error": "That is not the admin key, nor a live admin or read token."},
            status_code=status.HTTP_401_UNAUTHORIZED,
        )
    sign_in(request, opened)
    return RedirectResponse(_safe_next(next), status_code=status.HTTP_303_SEE_OTHER)


@router.post(LOGOUT_PATH)
async def logout(request: Request, resources: ResourcesDep) -> Response:
    if session_of(request) is not None:
        with contextlib.suppress(ApiError):  # already ended, or the api away: the cookie goes either way
            await resources.api_for(request).end_session()
    sign_out(request)
    return RedirectResponse(LOGIN_PATH, status_code=status.HTTP_303_SEE_OTHER)
