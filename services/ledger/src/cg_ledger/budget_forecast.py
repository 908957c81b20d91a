"""`budget.forecast` alerts, decided in the transaction that records the spend they rest on (after the statement
that adds it, whose per-hour rows this one reads): once per budget and period, when the forecast of a current
period that just grew first exceeds the amount. The method is cg_common.forecast's, written in SQL here.

Judging only periods that grew is enough: without new spend a forecast only falls (the recent pace slows, the time
left shrinks), so the first moment it exceeds the amount is always a moment spend arrived. Past periods are never
judged: a late event's period is over, its forecast is its spend.
"""

from __future__ import annotations

from collections.abc import Sequence

from cg_common import forecast
from cg_common.db import Connection

JUDGE = f"""
WITH grown AS (
    SELECT DISTINCT g.budget_id, g.definition
    FROM unnest(%(budgets)s::bigint[], %(definitions)s::integer[]) AS g(budget_id, definition)
),
current AS (
    SELECT b.id, b.definition, b.amount, s.period_start, s.period_end, s.spent,
           greatest(b.opening_period_start,
                    date_trunc('hour', now() - least(s.period_end - s.period_start,
                                                     interval '{forecast.LONGEST_WINDOW.total_seconds():.0f} seconds')))
               AS since
    FROM grown g
    JOIN budgets b ON b.id = g.budget_id AND b.definition = g.definition AND b.deleted_at IS NULL
    JOIN budget_spend s ON s.budget_id = b.id AND s.definition = b.definition
        AND s.period_start <= now() AND s.period_end > now()
    WHERE now() - s.period_start >= least(interval '{forecast.MIN_ELAPSED.total_seconds():.0f} seconds',
                                          (s.period_end - s.period_start) * {forecast.MIN_SHARE})
),
projected AS (
    SELECT c.*, round(c.spent + coalesce(r.recent, 0) / extract(epoch FROM now() - c.since)
                                * extract(epoch FROM c.period_end - now()), 12) AS forecast
    FROM current c
    CROSS JOIN LATERAL (
        SELECT sum(h.spent) AS recent FROM budget_spend_hourly h
        WHERE h.budget_id = c.id AND h.definition = c.definition AND h.hour >= c.since
    ) AS r
    WHERE now() > c.since
)
INSERT INTO budget_alerts (id, type, budget_id, threshold, period_start, period_end, spent, forecast)
SELECT 'budget.forecast:' || p.id || ':' || extract(epoch FROM p.period_start)::bigint,
       'budget.forecast', p.id, 100, p.period_start, p.period_end, p.spent, p.forecast
FROM projected p
WHERE p.forecast > p.amount
ORDER BY 1
ON CONFLICT DO NOTHING
RETURNING id
"""  # noqa: S608 - constants of cg_common.forecast, not input


async def judge(conn: Connection, grown: Sequence[tuple[int, int]]) -> list[str]:
    """The forecast alerts `grown` (budget, definition) current periods now call for; their ids."""
    if not grown:
        return []
    cursor = await conn.execute(
        JUDGE, {"budgets": [budget for budget, _ in grown], "definitions": [definition for _, definition in grown]}
    )
    return [row["id"] for row in await cursor.fetchall()]
