"""A budget's current period: what was spent in it, what is left, and where the spend is heading.

`spent` is the summary of the usage the scope covers over the period's [start, end) in the budget's time zone: the
roll-ups plus the partial hours, exact to the event, late events in their own period, re-sent ones once, repriced
ones at their new price. `forecast` is cg_common.forecast's projection (the recent burn rate carried to the period's
end) from the hourly spend the ledger keeps, the same the ledger's forecast alerts judge.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from cg_api import admission_repo, summary_repo
from cg_api.budget_periods import Window, window_at
from cg_api.budget_schemas import CurrentPeriod
from cg_common import forecast
from cg_common.db import Connection

CENTS = Decimal("0.01")


def scope_filters(scope: dict[str, Any]) -> summary_repo.Filters:
    """A stored scope as summary filters; attribute values compare by their JSON text, as in queries."""
    return summary_repo.Filters(
        key_id=scope.get("key_id"),
        model=scope.get("model"),
        source=scope.get("source"),
        provider=scope.get("provider"),
        attributes=tuple((name, _json_text(value)) for name, value in sorted(scope.get("attributes", {}).items())),
    )


def _json_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


async def opening(
    conn: Connection, budget: dict[str, Any], rolled: summary_repo.RolledUp, now: datetime | None = None
) -> dict[str, Any]:
    """A definition's opening: its current period's start and what the usage recorded so far spent in it, from
    which the ledger counts on (budgets_repo.lock first, so that no batch falls between)."""
    window = window_at(now or datetime.now(UTC), budget["period"], ZoneInfo(budget["timezone"]))
    spent = await _cost(conn, window.start, window.end, scope_filters(budget["scope"]), rolled)
    return {"opening_period_start": window.start, "opening_spent": spent}


async def current_period(
    conn: Connection, budget: dict[str, Any], rolled: summary_repo.RolledUp, now: datetime | None = None
) -> CurrentPeriod:
    now = now or datetime.now(UTC)
    window = window_at(now, budget["period"], ZoneInfo(budget["timezone"]))
    filters = scope_filters(budget["scope"])
    spent = await _cost(conn, window.start, window.end, filters, rolled)
    amount: Decimal = budget["amount"]
    held = (await admission_repo.holds(conn, [budget["id"]])).get(budget["id"])
    reserved = Decimal(held["reserved"]) if held else Decimal(0)
    return CurrentPeriod(
        period_start=window.start,
        period_end=window.end,
        spent=spent,
        reserved=reserved,
        remaining=max(amount - spent - reserved, Decimal(0)),
        percent=float((spent / amount * 100).quantize(CENTS)),
        forecast=await _forecast(conn, budget, window, spent, now),
        overrun=await admission_repo.overrun(conn, budget["id"], window.start),
        refusals=int(held["refusals"]) if held else 0,
    )


async def _forecast(conn: Connection, budget: dict[str, Any], window: Window, spent: Decimal, now: datetime) -> Decimal:
    """cg_common.forecast's projection, from the hourly spend the ledger keeps (as its forecast alerts do)."""
    if now <= window.start or now >= window.end:
        return spent
    since = forecast.recent_start(window.start, window.end, budget["opening_period_start"], now)
    cursor = await conn.execute(
        """SELECT coalesce(sum(spent), 0) AS recent FROM budget_spend_hourly
           WHERE budget_id = %s AND definition = %s AND hour >= %s""",
        (budget["id"], budget["definition"], since),
    )
    row = await cursor.fetchone()
    return forecast.project(spent, Decimal(row["recent"]) if row else Decimal(0), since, now, window.end)


async def _cost(
    conn: Connection, since: datetime, until: datetime, filters: summary_repo.Filters, rolled: summary_repo.RolledUp
) -> Decimal:
    rows = await summary_repo.summarize(
        conn, since=since, until=until, group_by=("provider",), filters=filters, rolled=rolled
    )
    return sum((row["cost"] for row in rows), Decimal(0))
