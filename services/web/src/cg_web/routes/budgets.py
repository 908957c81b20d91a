"""The Budgets page: every budget with its current period as a bar (spent, reserved, a forecast marker), and forms
to make, change and delete them (admins; the api refuses anyone else); the Alerts page: what the ledger said of them.
Plain forms and links: it all works without JavaScript."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, status
from fastapi.responses import RedirectResponse, Response

from cg_web.api_client import Api, ApiError
from cg_web.rendering import render
from cg_web.resources import ResourcesDep
from cg_web.routes.usage import dimensions_of

router = APIRouter()

BUDGETS = "/dashboard/budgets"
ALERTS = "/dashboard/alerts"
ALERTS_SHOWN = 200
PERIODS = ("day", "week", "month")
ZONES = ("UTC", "Europe/Berlin", "Europe/London", "America/New_York", "America/Los_Angeles", "Asia/Tokyo")
BudgetId = Annotated[int, Path(ge=1, le=2**63 - 1)]
SCOPE_FIELDS = ("key_id", "source", "model", "provider")
EMPTY_FORM: dict[str, Any] = {"period": "month", "timezone": "UTC", "thresholds": "50, 80, 100"}


@router.get(BUDGETS)
async def budgets_page(request: Request, resources: ResourcesDep, edit: int | None = None) -> Response:
    flash = request.session.pop("flash", None)
    return await _page(request, resources, editing=edit, messages=[flash] if flash else [])


@router.get(ALERTS)
async def alerts_page(request: Request, resources: ResourcesDep, budget_id: int | None = None) -> Response:
    """Every alert the ledger decided, newest first; one budget's when the page is opened from it."""
    params = {"limit": str(ALERTS_SHOWN), **({"budget_id": str(budget_id)} if budget_id else {})}
    alerts = await resources.api_for(request).alerts(params)
    return render(request, "alerts.html", {"alerts": alerts, "budget_id": budget_id, "shown": ALERTS_SHOWN})


@router.post(BUDGETS)
async def create_budget(request: Request, resources: ResourcesDep) -> Response:
    return await _save(request, resources, None)


@router.post(BUDGETS + "/{budget_id}")
async def change_budget(request: Request, resources: ResourcesDep, budget_id: BudgetId) -> Response:
    return await _save(request, resources, budget_id)


@router.post(BUDGETS + "/{budget_id}/delete")
async def delete_budget(request: Request, resources: ResourcesDep, budget_id: BudgetId) -> Response:
    await resources.api_for(request).delete_budget(budget_id)
    request.session["flash"] = ["ok", "Budget deleted."]
    return RedirectResponse(BUDGETS, status_code=status.HTTP_303_SEE_OTHER)


async def _save(request: Request, resources: ResourcesDep, budget_id: int | None) -> Response:
    """The form as the api's body; the api's own 422 words land beside the fields."""
    api = resources.api_for(request)
    dimensions = await dimensions_of(api)
    form = {name: str(value).strip() for name, value in (await request.form()).items() if isinstance(value, str)}
    form["hard"] = "on" if form.get("hard") else ""
    body, errors = _body(form, dimensions)
    if not errors:
        try:
            if budget_id is None:
                saved = await api.create_budget(body)
            else:
                saved = await api.change_budget(budget_id, body)
        except ApiError as error:
            if error.status not in (status.HTTP_422_UNPROCESSABLE_CONTENT, status.HTTP_409_CONFLICT):
                raise
            errors = error.fields or {"form": error.message}
        else:
            verb = "created" if budget_id is None else "changed"
            request.session["flash"] = ["ok", f"Budget “{saved['name']}” {verb}."]
            return RedirectResponse(BUDGETS, status_code=status.HTTP_303_SEE_OTHER)
    return await _page(
        request, resources, form=form, errors=errors, editing=budget_id, code=status.HTTP_422_UNPROCESSABLE_CONTENT
    )


def _body(form: dict[str, str], dimensions: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    errors: dict[str, str] = {}
    thresholds: list[int] = []
    for part in form.get("thresholds", "").replace(" ", "").split(","):
        if part:
            if not part.isdigit():
                errors["thresholds"] = "whole percentages, comma-separated (50, 80, 100)"
                break
            thresholds.append(int(part))
    scope: dict[str, Any] = {name: form[name] for name in SCOPE_FIELDS if form.get(name)}
    if "key_id" in scope:
        scope["key_id"] = int(scope["key_id"]) if scope["key_id"].isdigit() else scope["key_id"]
    attributes = {name: form[f"attributes.{name}"] for name in dimensions if form.get(f"attributes.{name}")}
    if attributes:
        scope["attributes"] = attributes
    body = {
        "name": form.get("name", ""),
        "amount": form.get("amount", ""),
        "period": form.get("period", ""),
        "timezone": form.get("timezone", "") or "UTC",
        "scope": scope,
        "thresholds": thresholds,
        "hard": form.get("hard") == "on",
    }
    return body, errors


def _form_of(budget: dict[str, Any]) -> dict[str, Any]:
    """A stored budget as the form shows it, to change it."""
    scope = budget["scope"]
    return {
        "name": budget["name"],
        "amount": budget["amount"],
        "period": budget["period"],
        "timezone": budget["timezone"],
        "thresholds": ", ".join(str(t) for t in budget["thresholds"]),
        "hard": "on" if budget["hard"] else "",
        **{name: str(scope[name]) for name in SCOPE_FIELDS if name in scope},
        **{f"attributes.{name}": str(value) for name, value in scope.get("attributes", {}).items()},
    }


async def _page(
    request: Request,
    resources: ResourcesDep,
    *,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    editing: int | None = None,
    messages: list[Any] | None = None,
    code: int = 200,
) -> Response:
    api = resources.api_for(request)
    budgets = [_with_bar(budget) for budget in await api.budgets()]
    edited = next((b for b in budgets if b["id"] == editing), None)
    context = {
        "budgets": budgets,
        "form": form or (_form_of(edited) if edited else EMPTY_FORM),
        "editing": edited["id"] if edited else None,
        "errors": errors or {},
        "messages": messages or [],
        "periods": PERIODS,
        "zones": ZONES,
        "dimensions": await dimensions_of(api),
        "keys": await _keys(api),
    }
    return render(request, "budgets.html", context, status_code=code)


def _with_bar(budget: dict[str, Any]) -> dict[str, Any]:
    """The bar's lengths, in percent of the amount, capped at the bar's end (the figures beside it are not)."""
    current = budget["current"]
    amount = Decimal(budget["amount"])

    def share(value: str) -> float:
        return float(min(Decimal(value) / amount * 100, Decimal(100)))

    bar = {"spent": share(current["spent"]), "forecast": share(current["forecast"])}
    bar["reserved"] = min(share(current["reserved"]), 100 - bar["spent"])
    state = "bad" if current["percent"] >= 100 else "warn" if Decimal(current["forecast"]) > amount else "ok"
    return {**budget, "bar": bar, "state": state}


async def _keys(api: Api) -> list[dict[str, Any]]:
    try:
        return await api.keys()
    except ApiError:
        return []
