"""The Billing page: what OpenAI billed (its cost reports, pulled with admin keys) beside what the ledger computed from
the organization's usage, per UTC day, as a chart and a table with the drift per day and over the range."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from cg_web import chart
from cg_web.rendering import render
from cg_web.resources import ResourcesDep

router = APIRouter()

DEFAULT_DAYS = 30
MAX_DAYS = 366
NAMES = ("billed by OpenAI", "computed by Cost Guardian")


@router.get("/dashboard/billing")
async def billing_page(
    request: Request,
    resources: ResourcesDep,
    since: Annotated[date | None, Query(description="First UTC day")] = None,
    until: Annotated[date | None, Query(description="Last UTC day, included")] = None,
) -> Response:
    last = until or datetime.now(UTC).date()
    first = since or last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last or (last - first).days >= MAX_DAYS:
        refused = {"error": f"Choose a first day on or before the last, at most {MAX_DAYS} days apart.", "days": []}
        return render(request, "billing.html", {**refused, "since": first, "until": last}, status_code=422)
    summary = await resources.api_for(request).billed(
        since=first.isoformat(), until=(last + timedelta(days=1)).isoformat()
    )
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    rows = {date.fromisoformat(d["day"]): d for d in summary["days"]}
    billed = {day: Decimal(row["billed"]) for day, row in rows.items() if row["billed"] is not None}
    computed = {day: Decimal(row["computed"]) for day, row in rows.items()}
    table = [_row(day, rows.get(day)) for day in days if day in rows]
    billed_total, computed_total = Decimal(summary["billed"]), Decimal(summary["computed"])
    context: dict[str, Any] = {
        "since": first,
        "until": last,
        "chart": chart.paired(days, billed, computed, NAMES),
        "days": table,
        "totals": {
            "billed": billed_total,
            "computed": computed_total,
            "drift": billed_total - computed_total,
            "drift_percent": _percent(billed_total - computed_total, billed_total),
            "unpriced_events": sum(int(r["unpriced_events"]) for r in summary["days"]),
        },
        "error": None,
    }
    return render(request, "billing.html", context)


def _row(day: date, row: dict[str, Any] | None) -> dict[str, Any]:
    assert row is not None  # noqa: S101 - only days the api answered for are listed
    billed = Decimal(row["billed"]) if row["billed"] is not None else None
    computed = Decimal(row["computed"])
    drift = billed - computed if billed is not None else None
    return {
        "day": day.isoformat(),
        "billed": billed,
        "computed": computed,
        "drift": drift,
        "drift_percent": _percent(drift, billed) if drift is not None and billed is not None else None,
        "unpriced_events": int(row["unpriced_events"]),
    }


def _percent(part: Decimal, whole: Decimal) -> str | None:
    return f"{part / whole * 100:+.1f}%" if whole else None
