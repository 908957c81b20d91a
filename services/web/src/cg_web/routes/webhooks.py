"""The Webhooks page: where budget alerts are delivered. Made with the signing secret shown once (never in the
cookie, never in a redirect), deleted behind a confirmation, tried with a test delivery, and each with its delivery
log: every attempt and what the receiver answered. Admins only (the api refuses anyone else); no JavaScript needed."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request, status
from fastapi.responses import RedirectResponse, Response

from cg_web.api_client import ApiError
from cg_web.rendering import render
from cg_web.resources import ResourcesDep

router = APIRouter()

WEBHOOKS = "/dashboard/webhooks"
EVENTS = ("budget.threshold", "budget.forecast")
FORMATS = ("json", "slack")
DELIVERIES_SHOWN = 100
WebhookId = Annotated[int, Path(ge=1, le=2**63 - 1)]
EMPTY_FORM: dict[str, Any] = {"url": "", "events": list(EVENTS), "format": "json"}


@router.get(WEBHOOKS)
async def webhooks_page(request: Request, resources: ResourcesDep) -> Response:
    flash = request.session.pop("flash", None)
    return await _page(request, resources, messages=[flash] if flash else [])


@router.post(WEBHOOKS)
async def create_webhook(
    request: Request,
    resources: ResourcesDep,
    url: Annotated[str, Form(max_length=4096)] = "",
    events: Annotated[list[str] | None, Form(max_length=2)] = None,
    format: Annotated[str, Form(max_length=10)] = "json",
) -> Response:
    form = {"url": url, "events": events or [], "format": format}
    try:
        created = await resources.api_for(request).create_webhook(form)
    except ApiError as error:
        if error.status != status.HTTP_422_UNPROCESSABLE_CONTENT:
            raise
        errors = error.fields or {"form": error.message}
        return await _page(request, resources, form=form, errors=errors, code=error.status)
    return await _page(request, resources, created=created, messages=[("ok", "Webhook created.")])


@router.post(WEBHOOKS + "/{webhook_id}/delete")
async def delete_webhook(request: Request, resources: ResourcesDep, webhook_id: WebhookId) -> Response:
    await resources.api_for(request).delete_webhook(webhook_id)
    request.session["flash"] = ["ok", "Webhook deleted: nothing more is sent to it."]
    return RedirectResponse(WEBHOOKS, status_code=status.HTTP_303_SEE_OTHER)


@router.post(WEBHOOKS + "/{webhook_id}/test")
async def test_webhook(request: Request, resources: ResourcesDep, webhook_id: WebhookId) -> Response:
    """One signed test delivery now; the page says what the receiver answered."""
    try:
        result = await resources.api_for(request).test_webhook(webhook_id)
    except ApiError as error:
        request.session["flash"] = ["error", f"Test not sent: {error.message}"]
    else:
        if result["status"] == "delivered":
            request.session["flash"] = ["ok", f"Test delivered: the receiver answered {result['response_status']}."]
        else:
            request.session["flash"] = ["error", f"Test not delivered ({result['error']}); it will be retried."]
    return RedirectResponse(f"{WEBHOOKS}/{webhook_id}", status_code=status.HTTP_303_SEE_OTHER)


@router.get(WEBHOOKS + "/{webhook_id}")
async def deliveries_page(
    request: Request, resources: ResourcesDep, webhook_id: WebhookId, delivery_status: str | None = None
) -> Response:
    """The delivery log, newest first: each delivery with every attempt."""
    flash = request.session.pop("flash", None)
    api = resources.api_for(request)
    params = {"limit": str(DELIVERIES_SHOWN), **({"status": delivery_status} if delivery_status else {})}
    deliveries = await api.deliveries(webhook_id, params)
    webhook = next((hook for hook in await api.webhooks() if hook["id"] == webhook_id), None)
    context = {
        "webhook": webhook,
        "webhook_id": webhook_id,
        "deliveries": deliveries,
        "status": delivery_status,
        "shown": DELIVERIES_SHOWN,
        "messages": [flash] if flash else [],
    }
    return render(request, "webhook_deliveries.html", context)


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
    context = {
        "webhooks": await resources.api_for(request).webhooks(),
        "form": form or EMPTY_FORM,
        "errors": errors or {},
        "created": created,
        "messages": messages or [],
        "all_events": EVENTS,
        "formats": FORMATS,
    }
    return render(request, "webhooks.html", context, status_code=code)
