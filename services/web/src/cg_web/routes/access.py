"""The Access page (API tokens: made with the secret shown once, listed, revoked) and the Audit page (every change
made through the api, newest first). Both need an admin sign-in: the api refuses anyone else."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request, status
from fastapi.responses import RedirectResponse, Response

from cg_web.api_client import ApiError
from cg_web.rendering import render
from cg_web.resources import ResourcesDep

router = APIRouter()

ACCESS = "/dashboard/access"
AUDIT = "/dashboard/audit"
SCOPES = ("admin", "read", "ingest", "admit")
AUDIT_PAGE = 50
TokenId = Annotated[int, Path(ge=1, le=2**63 - 1)]
EMPTY_FORM = {"name": "", "scopes": ["ingest"], "sources": "", "rpm": "", "burst": "", "expires": ""}


@router.get(ACCESS)
async def access_page(request: Request, resources: ResourcesDep) -> Response:
    flash = request.session.pop("flash", None)
    return await _page(request, resources, messages=[flash] if flash else [])


@router.post(ACCESS)
async def create_token(
    request: Request,
    resources: ResourcesDep,
    name: Annotated[str, Form(max_length=200)] = "",
    scopes: Annotated[list[str] | None, Form(max_length=4)] = None,
    sources: Annotated[str, Form(max_length=20_000)] = "",
    rpm: Annotated[str, Form(max_length=12)] = "",
    burst: Annotated[str, Form(max_length=12)] = "",
    expires: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    """The new token's secret is in this page only (never in the cookie, never in a redirect)."""
    form = {"name": name, "scopes": scopes or [], "sources": sources, "rpm": rpm, "burst": burst, "expires": expires}
    body: dict[str, Any] = {"name": name, "scopes": scopes or []}
    patterns = [line.strip() for line in sources.splitlines() if line.strip()]
    if patterns:
        body["sources"] = patterns
    errors: dict[str, str] = {}
    for field, text in (("rate_limit_rpm", rpm), ("rate_limit_burst", burst)):
        if text.strip():
            if not text.strip().isdigit():
                errors[field] = "a whole number"
            else:
                body[field] = int(text)
    if expires.strip():
        try:
            body["expires_at"] = datetime.fromisoformat(expires.strip()).replace(tzinfo=UTC).isoformat()
        except ValueError:
            errors["expires_at"] = "a date and time, UTC"
    if errors:
        return await _page(request, resources, form=form, errors=errors, code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    try:
        created = await resources.api_for(request).create_token(body)
    except ApiError as error:
        if error.status != status.HTTP_422_UNPROCESSABLE_CONTENT:
            raise
        errors = error.fields or {"form": error.message}
        return await _page(request, resources, form=form, errors=errors, code=error.status)
    return await _page(request, resources, created=created, messages=[("ok", f"Token “{created['name']}” created.")])


@router.post(ACCESS + "/{token_id}/revoke")
async def revoke_token(request: Request, resources: ResourcesDep, token_id: TokenId) -> Response:
    await resources.api_for(request).revoke_token(token_id)
    request.session["flash"] = ["ok", "Token revoked: every api replica refuses it within a second."]
    return RedirectResponse(ACCESS, status_code=status.HTTP_303_SEE_OTHER)


@router.get(AUDIT)
async def audit_page(request: Request, resources: ResourcesDep, cursor: str | None = None) -> Response:
    params = {"limit": str(AUDIT_PAGE), **({"cursor": cursor} if cursor else {})}
    page = await resources.api_for(request).audit(params)
    return render(request, "audit.html", {"entries": page["entries"], "next_cursor": page["next_cursor"]})


async def _page(
    request: Request,
    resources: ResourcesDep,
    *,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    created: dict[str, Any] | None = None,
    messages: list[Any] | None = None,
    code: int = 200,
) -> Response:
    tokens = await resources.api_for(request).tokens()
    now = datetime.now(UTC).isoformat()
    for token in tokens:
        token["state"] = (
            "revoked"
            if token["revoked_at"]
            else "expired"
            if token["expires_at"] and token["expires_at"] <= now
            else "live"
        )
    context = {
        "tokens": sorted(tokens, key=lambda t: (t["state"] != "live", -t["id"])),
        "form": form or EMPTY_FORM,
        "errors": errors or {},
        "created": created,
        "messages": messages or [],
        "all_scopes": SCOPES,
    }
    return render(request, "access.html", context, status_code=code)
