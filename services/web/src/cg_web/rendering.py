"""Pages from Jinja templates: one template per page, whose named blocks double as the fragments htmx asks for."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from cg_web.access import CSRF_FIELD, CSRF_HEADER, can_change, is_signed_in, masked_csrf, who


def environment(static_urls: Mapping[str, str]) -> Environment:
    env = Environment(
        loader=PackageLoader("cg_web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static"] = lambda name: static_urls[name]
    env.globals["csrf_field"] = CSRF_FIELD
    env.globals["csrf_header"] = CSRF_HEADER
    env.filters["money"] = money
    env.filters["tokens"] = tokens
    env.filters["when"] = when
    return env


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def render(
    request: Request,
    template_name: str,
    context: Mapping[str, Any],
    *,
    block: str | None = None,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """The whole page, or only `block` of it (the fragment an htmx request swaps in)."""
    env: Environment = request.app.state.templates
    template = env.get_template(template_name)
    # An error page may be rendered for a request that never reached the session layer (a static file, say).
    has_session = "session" in request.scope
    full_context = {
        "request": request,
        "csrf_token": masked_csrf(request) if has_session else "",
        "signed_in": has_session and is_signed_in(request),
        "can_change": has_session and can_change(request),
        "who": who(request) if has_session else None,
        "public": request.app.state.settings.dashboard_public,
        "path": request.url.path,
        "messages": [],
        "errors": {},
        **context,
    }
    if block is None:
        html = template.render(full_context)
    else:
        html = "".join(template.blocks[block](template.new_context(full_context)))
    return HTMLResponse(html, status_code=status_code, headers=dict(headers or {}))


def money(value: object) -> str:
    """USD with cents, more digits only for amounts under a cent (probe costs are fractions of one)."""
    if value is None:
        return "unknown"
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return "unknown"
    if amount == 0:
        return "$0.00"
    if abs(amount) < Decimal("0.01"):
        return f"${amount:.6f}".rstrip("0")
    return f"${amount:,.2f}"


def tokens(value: object) -> str:
    return "unknown" if value is None else f"{int(str(value)):,}"


def when(value: object) -> str:
    """An RFC 3339 time as `2026-12-01 06:03 UTC`; `never` for none."""
    if not value:
        return "never"
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return "unknown"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
