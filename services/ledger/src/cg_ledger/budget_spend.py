"""Budget spend and threshold alerts, decided in the transaction that records (or reprices) the usage they rest on.

For the rows just stored, each live budget whose scope covers a row adds the row's cost to its spend in the row's
period (in the budget's time zone: a late event counts in its own period). The definition's first period starts from
its opening, which the api summed from the usage recorded before; periods before the definition are not counted.
Budgets are found through an index on their scope's members and values, so thousands cost a lookup per record and
per distinct set of members. Rows are upserted in key order, so concurrent batches lock them in the same order and
each sees the spend before and after its own addition: a threshold is crossed by exactly one transaction (a
period's first row counts from nothing, so what was reached before the budget was made is said when it is first
counted), and its alert is inserted with `ON CONFLICT DO NOTHING` on (budget, period, kind, threshold), so
replays, re-sends and a reprice that lowers and raises again can never alert twice.

Why no batch is missed or counted twice when a budget is made or its scope changes: the api takes the budgets table
exclusively, then sums the opening, so it waits for every batch that read the old budgets (they are in the opening)
and makes every later batch read the new ones (they add to it).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from cg_common.db import Connection
from cg_ledger import budget_forecast

# One statement: the changed records, the budgets covering each (an index on the scope's members and values), the
# spend per (budget, period) upserted in order, then an alert for every threshold the new spend reaches and the old
# one did not.
APPLY = """
WITH changed AS (
    SELECT u.occurred_at, u.key_id, u.source, u.provider, u.model, u.attributes, c.added
    FROM unnest(%(ids)s::bigint[], %(added)s::numeric[]) AS c(id, added)
    JOIN usage_events u ON u.id = c.id
    WHERE c.added <> 0 AND EXISTS (SELECT FROM budgets WHERE deleted_at IS NULL)  -- no budget: nothing read
),
shapes AS (  -- the distinct sets of members live budgets name: a handful, however many budgets
    SELECT DISTINCT scope_members FROM budgets WHERE deleted_at IS NULL
),
keyed AS MATERIALIZED (  -- each changed record under each shape, with its values for that shape's members
    SELECT ch.*, s.scope_members,
           usage_member_values(s.scope_members, ch.key_id, ch.source, ch.provider, ch.model, ch.attributes) AS vals
    FROM changed ch CROSS JOIN shapes s
),
matched AS MATERIALIZED (
    SELECT b.id AS budget_id, b.definition, b.opening_period_start, b.opening_spent, b.period, b.timezone,
           k.occurred_at, k.added
    FROM keyed k
    -- An index look-up per record and shape (budgets_live_scope), whatever the planner believes of the budgets
    -- table: OFFSET 0 keeps the sub-select from being turned into a join it might loop over instead.
    CROSS JOIN LATERAL (
        SELECT id, definition, period, timezone, opening_period_start, opening_spent FROM budgets
        WHERE deleted_at IS NULL AND scope_members = k.scope_members AND scope_values = k.vals OFFSET 0
    ) AS b
    WHERE date_trunc(b.period, k.occurred_at, b.timezone) >= b.opening_period_start  -- not before the definition
),
hits AS (
    SELECT m.budget_id, m.definition, m.opening_period_start, m.opening_spent,
           date_trunc(m.period, m.occurred_at, m.timezone) AS period_start,
           (date_trunc(m.period, m.occurred_at, m.timezone) AT TIME ZONE m.timezone + ('1 ' || m.period)::interval)
               AT TIME ZONE m.timezone AS period_end,
           sum(m.added) AS added
    FROM matched m
    GROUP BY 1, 2, 3, 4, 5, 6
),
hourly AS (  -- the recent burn rate a forecast rests on (budget_forecast)
    INSERT INTO budget_spend_hourly (budget_id, definition, hour, spent)
    SELECT m.budget_id, m.definition, date_trunc('hour', m.occurred_at), sum(m.added)
    FROM matched m
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
    ON CONFLICT (budget_id, definition, hour) DO UPDATE SET spent = budget_spend_hourly.spent + EXCLUDED.spent
),
upserted AS (
    INSERT INTO budget_spend (budget_id, definition, period_start, period_end, spent, last_added)
    SELECT h.budget_id, h.definition, h.period_start, h.period_end,
           h.added + CASE WHEN h.period_start = h.opening_period_start THEN h.opening_spent ELSE 0 END,
           h.added
    FROM hits h
    ORDER BY h.budget_id, h.definition, h.period_start
    ON CONFLICT (budget_id, definition, period_start) DO UPDATE
        SET spent = budget_spend.spent + EXCLUDED.last_added, last_added = EXCLUDED.last_added
    -- A period's first row (xmax = 0: inserted, not updated) reports from nothing: thresholds reached before the
    -- budget existed, or before its scope changed, are said once now.
    RETURNING budget_id, definition, period_start, period_end,
              CASE WHEN xmax = 0 THEN 0 ELSE spent - last_added END AS before, spent AS after
),
alerted AS (
    INSERT INTO budget_alerts (id, type, budget_id, threshold, period_start, period_end, spent)
    SELECT 'budget.threshold:' || u.budget_id || ':' || extract(epoch FROM u.period_start)::bigint || ':' || t.percent,
           'budget.threshold', u.budget_id, t.percent, u.period_start, u.period_end, u.after
    FROM upserted u
    JOIN budgets b ON b.id = u.budget_id
    CROSS JOIN LATERAL unnest(b.thresholds) AS t(percent)
    WHERE u.after >= b.amount * t.percent / 100 AND u.before < b.amount * t.percent / 100
    ORDER BY 1
    ON CONFLICT DO NOTHING
    RETURNING id
)
-- The alerts decided, and the current periods that grew (whose forecast the next statement judges).
SELECT id, NULL::bigint AS budget_id, NULL::integer AS definition FROM alerted
UNION ALL
SELECT NULL, u.budget_id, u.definition FROM upserted u
WHERE u.after > u.before AND u.period_start <= now() AND u.period_end > now()
"""


async def apply(conn: Connection, ids: Sequence[int], added: Sequence[Decimal | None]) -> list[str]:
    """Add `added[i]` (a new row's cost, or a repriced row's difference) of record `ids[i]` to the spend of every
    budget covering it, in the caller's transaction; returns the ids of the alerts this decided (thresholds, and
    forecasts of the current periods that grew)."""
    if not ids:
        return []
    costs = [value or Decimal(0) for value in added]
    if not any(costs):
        return []
    cursor = await conn.execute(APPLY, {"ids": list(ids), "added": costs})
    rows = await cursor.fetchall()
    alerts = [row["id"] for row in rows if row["id"] is not None]
    grown = [(row["budget_id"], row["definition"]) for row in rows if row["id"] is None]
    return alerts + await budget_forecast.judge(conn, grown)
