"""The Breakdown page: spend per value of a grouping (key, model, source, provider or a dimension) over a chosen
range, as a table with totals and as a chart per day stacked by value, from two summaries the api keeps exact for any
range."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from cg_web import chart
from cg_web.rendering import render
from cg_web.resources import ResourcesDep
from cg_web.routes.usage import dimensions_of

router = APIRouter()

GROUPINGS = ("key", "model", "source", "provider")
DEFAULT_DAYS = 30
MAX_DAYS = 366


@router.get("/dashboard/breakdown")
async def breakdown_page(
    request: Request,
    resources: ResourcesDep,
    by: str = "model",
    since: Annotated[date | None, Query(description="First UTC day")] = None,
    until: Annotated[date | None, Query(description="Last UTC day, included")] = None,
) -> Response:
    api = resources.api_for(request)
    groupings = {g: g for g in GROUPINGS} | {f"attributes.{d}": d for d in await dimensions_of(api)}
    last = until or datetime.now(UTC).date()
    first = since or last - timedelta(days=DEFAULT_DAYS - 1)
    context: dict[str, Any] = {
        "by": by,
        "by_name": groupings.get(by, by),
        "groupings": groupings,
        "since": first,
        "until": last,
        "error": None,
    }
    if by not in groupings:
        context["error"] = f"Choose what to group by: {', '.join(groupings.values())}."
        return render(request, "breakdown.html", context, status_code=422)
    if first > last or (last - first).days >= MAX_DAYS:
        context["error"] = f"Choose a first day on or before the last, at most {MAX_DAYS} days apart."
        return render(request, "breakdown.html", context, status_code=422)
    start = datetime.combine(first, time(), tzinfo=UTC).isoformat()
    end = datetime.combine(last + timedelta(days=1), time(), tzinfo=UTC).isoformat()
    summary = await api.summary(by, since=start, until=end)
    per_day = await api.summary(f"day,{by}", since=start, until=end)
    names = {g["group"]: _name(g, by) for g in summary["groups"]}
    costs: dict[date, dict[str, Decimal]] = {}
    for group in per_day["groups"]:
        day, value = group["group"]
        costs.setdefault(date.fromisoformat(day), {})[names.get(value, str(value))] = Decimal(group["cost"])
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    context |= {
        "rows": [
            {**g, "name": names[g["group"]], "tokens": int(g["input_tokens"]) + int(g["output_tokens"])}
            for g in summary["groups"]
        ],
        "totals": summary["totals"],
        "chart": chart.stacked_by_model(days, costs, other=f"other {groupings[by]}s"),
    }
    return render(request, "breakdown.html", context)


def _name(group: dict[str, Any], by: str) -> str:
    value = group["group"]
    if value is None:
        return "no key" if by == "key" else "none"
    if by == "key":
        return f"{group['label']} ({group['masked_key']})" if group.get("label") else f"key {value}"
    return str(value)
