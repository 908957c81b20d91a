"""GET /usage/billed: what OpenAI billed per day (its cost reports, pulled with admin keys) beside what the ledger
computed from the same organization's usage reports, so a gap between the price table and the invoice shows."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel

from cg_api.auth import Authenticated
from cg_api.deps import DbDep
from cg_common.money import Money
from cg_common.organization import ORGANIZATION_SOURCES_LIKE

router = APIRouter(prefix="/usage", tags=["usage"], dependencies=[Authenticated])

DEFAULT_DAYS = 30

BY_DAY = """
WITH billed AS (
    SELECT day, sum(amount) AS billed FROM billed_costs
    WHERE day >= %(since)s AND day < %(until)s AND currency = 'usd' GROUP BY day
), computed AS (
    SELECT bucket AS day, sum(cost) AS computed, sum(unpriced_events) AS unpriced FROM usage_rollup_daily
    WHERE bucket >= %(since)s AND bucket < %(until)s AND source LIKE %(sources)s GROUP BY bucket
)
SELECT day, coalesce(billed, 0) AS billed, billed IS NOT NULL AS has_billed, coalesce(computed, 0) AS computed,
       coalesce(unpriced, 0) AS unpriced
FROM billed FULL JOIN computed USING (day) ORDER BY day
"""


class BilledDay(BaseModel):
    day: date
    billed: Money | None  # None: no cost report for that day yet
    computed: Money  # priced from the organization's usage reports (same admin keys), by the ledger
    unpriced_events: int  # usage the price table could not price: `computed` is short by their cost


class BilledSummary(BaseModel):
    since: date
    until: date
    currency: str
    days: list[BilledDay]
    billed: Money
    computed: Money


@router.get("/billed", response_model=BilledSummary)
async def billed(
    db: DbDep,
    since: Annotated[date | None, Query(description="First UTC day; default until − 30 days.")] = None,
    until: Annotated[date | None, Query(description="Day after the last; default tomorrow (UTC).")] = None,
) -> BilledSummary:
    """Billed (OpenAI's `/organization/costs`) beside computed (the ledger's prices of `/organization/usage`), per UTC
    day, in USD."""
    until = until or datetime.now(UTC).date() + timedelta(days=1)
    since = since or _days_before(until, DEFAULT_DAYS)
    if since > until:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[{"loc": ["query", "since"], "msg": "since must not be after until", "type": "value_error"}],
        )
    cursor = await db.execute(BY_DAY, {"since": since, "until": until, "sources": ORGANIZATION_SOURCES_LIKE})
    days = [
        BilledDay(
            day=row["day"],
            billed=row["billed"] if row["has_billed"] else None,
            computed=row["computed"],
            unpriced_events=int(row["unpriced"]),
        )
        for row in await cursor.fetchall()
    ]
    return BilledSummary(
        since=since,
        until=until,
        currency="usd",
        days=days,
        billed=sum((d.billed for d in days if d.billed is not None), Decimal(0)),
        computed=sum((d.computed for d in days), Decimal(0)),
    )


def _days_before(day: date, days: int) -> date:
    """`day` minus `days`, or the first day there is when that would come before it."""
    return day - timedelta(days=days) if day.toordinal() > days else date.min
