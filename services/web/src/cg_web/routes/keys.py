"""The keys page: masked keys with their health and spend, and adding, pausing, testing and deleting them.

Each change answers an htmx request with the refreshed section (plus `HX-Trigger: keys-changed`) and a plain form
post with a 303 back to the page, the outcome carried over in the session as a one-time message.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request, status
from fastapi.responses import RedirectResponse, Response

from cg_web.api_client import Api, ApiError
from cg_web.rendering import is_htmx, render
from cg_web.resources import ResourcesDep

router = APIRouter(prefix="/dashboard/keys")

PAGE = "/dashboard/keys"
USAGE_DAYS = 30
KeyId = Annotated[int, Path(ge=1, le=2**63 - 1)]
CHANGED = {"HX-Trigger": "keys-changed"}


async def keys_context(api: Api) -> dict[str, Any]:
    """Live keys with 30 days of tokens and cost each, and the totals of exactly the rows shown."""
    try:
        keys = await api.keys()
    except ApiError as error:
        return {"keys": [], "keys_error": error.message, "totals": None, "usage_error": None}
    now = datetime.now(UTC)
    usage: dict[int, dict[str, Any]] = {}
    usage_error = None
    try:
        summary = await api.summary("key", since=(now - timedelta(days=USAGE_DAYS)).isoformat(), until=now.isoformat())
        usage = {int(g["group"]): g for g in summary["groups"] if g["group"] is not None}
    except ApiError as error:
        usage_error = error.message
    rows = []
    for key in keys:
        figures = usage.get(key["id"])
        tokens = int(figures["input_tokens"]) + int(figures["output_tokens"]) if figures else 0
        cost = Decimal(figures["cost"]) if figures else Decimal(0)
        rows.append({**key, "tokens": tokens, "cost": cost})
    totals = {"tokens": sum(r["tokens"] for r in rows), "cost": sum((r["cost"] for r in rows), Decimal(0))}
    return {"keys": rows, "keys_error": None, "totals": totals, "usage_error": usage_error}


@router.get("")
async def keys_page(request: Request, resources: ResourcesDep) -> Response:
    context = await keys_context(resources.api_for(request))
    flash = request.session.pop("flash", None)
    probe = request.session.pop("probe", None)
    return render(
        request,
        "keys.html",
        {
            **context,
            "messages": [flash] if flash else [],
            "probes": {probe["key_id"]: probe} if probe else {},
            "form": {"label": "", "kind": "standard"},
        },
    )


@router.post("")
async def add_key(
    request: Request,
    resources: ResourcesDep,
    label: Annotated[str, Form(max_length=1000)] = "",
    api_key: Annotated[str, Form(max_length=4096)] = "",
    kind: Annotated[str, Form(max_length=20)] = "standard",
) -> Response:
    try:
        added = await resources.api_for(request).add_key(label=label, api_key=api_key, kind=kind)
    except ApiError as error:
        if error.status not in (status.HTTP_409_CONFLICT, status.HTTP_422_UNPROCESSABLE_CONTENT):
            raise
        errors = error.fields or {"api_key": error.message}
        # The submitted key is never sent back, not even into its own field.
        return await _section(request, resources, errors=errors, form={"label": label, "kind": kind}, code=error.status)
    return await _done(request, resources, ("ok", f"Key “{added['label']}” added as {added['masked_key']}."))


@router.post("/{key_id}/active")
async def set_active(
    request: Request, resources: ResourcesDep, key_id: KeyId, active: Annotated[str, Form()] = "true"
) -> Response:
    turned_on = active == "true"
    changed = await resources.api_for(request).set_active(key_id, turned_on)
    state = "active: it is probed again" if turned_on else "paused: it is not probed"
    return await _done(request, resources, ("ok", f"Key “{changed['label']}” is {state}."))


@router.post("/{key_id}/delete")
async def delete_key(request: Request, resources: ResourcesDep, key_id: KeyId) -> Response:
    await resources.api_for(request).delete_key(key_id)
    return await _done(request, resources, ("ok", "Key deleted; its usage history stays."))


@router.post("/{key_id}/test")
async def test_key(request: Request, resources: ResourcesDep, key_id: KeyId) -> Response:
    """Asks the api for a probe now and shows its answer in the key's row."""
    try:
        probe: dict[str, Any] = {
            "key_id": key_id,
            "result": await resources.api_for(request).probe(key_id, wait_secs=resources.settings.probe_wait_secs),
        }
    except ApiError as error:
        probe = {"key_id": key_id, "error": _probe_error(error)}
    if not is_htmx(request):
        request.session["probe"] = probe
        return RedirectResponse(PAGE, status_code=status.HTTP_303_SEE_OTHER)
    return render(request, "keys.html", {"key": {"id": key_id}, "probes": {key_id: probe}}, block="probe_result")


def _probe_error(error: ApiError) -> str:
    if error.status == status.HTTP_504_GATEWAY_TIMEOUT:
        return f"No answer from the prober in time: {error.message}"
    if error.status == status.HTTP_404_NOT_FOUND:
        return "This key no longer exists (or the api cannot probe keys yet)."
    if error.status == status.HTTP_405_METHOD_NOT_ALLOWED:
        return "This api cannot probe keys yet."
    return error.message


async def _done(request: Request, resources: ResourcesDep, message: tuple[str, str]) -> Response:
    if is_htmx(request):
        return await _section(request, resources, messages=[message], headers=CHANGED)
    request.session["flash"] = list(message)
    return RedirectResponse(PAGE, status_code=status.HTTP_303_SEE_OTHER)


async def _section(
    request: Request,
    resources: ResourcesDep,
    *,
    messages: list[tuple[str, str]] | None = None,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    context = {
        **await keys_context(resources.api_for(request)),
        "messages": messages or [],
        "errors": errors or {},
        "probes": {},
        "form": form or {"label": "", "kind": "standard"},
    }
    block = "keys_section" if is_htmx(request) else None
    return render(request, "keys.html", context, block=block, status_code=code, headers=headers)
