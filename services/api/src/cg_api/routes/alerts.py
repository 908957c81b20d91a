"""GET /alerts: the budget alerts the ledger decided (contract section 8), newest first."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from cg_api.deps import DbDep
from cg_api.usage_schemas import UtcDatetime
from cg_common.money import Money

router = APIRouter(tags=["budgets"])


class AlertBudget(BaseModel):
    id: int
    name: str
    amount: Money
    period: str
    timezone: str
    scope: dict[str, Any]


class AlertOut(BaseModel):
    """One alert: the budget (as it is defined now), the threshold reached (a percentage), the period and the spend
    that reached it. `forecast` is the projected spend for `budget.forecast` alerts, null for thresholds."""

    id: str
    type: str
    budget: AlertBudget
    threshold: int
    period_start: UtcDatetime
    period_end: UtcDatetime
    spent: Money
    forecast: Money | None = None
    occurred_at: UtcDatetime


@router.get("/alerts", response_model=list[AlertOut])
async def list_alerts(
    db: DbDep,
    budget_id: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="Only this budget's.")] = None,
    since: Annotated[UtcDatetime | None, Query(description="Only alerts at or after this moment.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AlertOut]:
    cursor = await db.execute(
        """SELECT a.id, a.type, a.threshold, a.period_start, a.period_end, a.spent, a.forecast, a.occurred_at,
                  b.id AS budget_id, b.name, b.amount, b.period, b.timezone, b.scope
           FROM budget_alerts a JOIN budgets b ON b.id = a.budget_id
           WHERE (%(budget)s::bigint IS NULL OR a.budget_id = %(budget)s)
             AND (%(since)s::timestamptz IS NULL OR a.occurred_at >= %(since)s)
           ORDER BY a.occurred_at DESC, a.id DESC LIMIT %(limit)s""",
        {"budget": budget_id, "since": since, "limit": limit},
    )
    return [
        AlertOut.model_validate(
            {
                **row,
                "budget": {
                    "id": row["budget_id"],
                    "name": row["name"],
                    "amount": row["amount"],
                    "period": row["period"],
                    "timezone": row["timezone"],
                    "scope": row["scope"],
                },
            }
        )
        for row in await cursor.fetchall()
    ]
