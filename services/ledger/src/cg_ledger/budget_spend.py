"""Budget spend and threshold alerts, decided in the transaction that records (or reprices) the usage they rest on.

For the rows just stored, each live budget whose scope covers a row adds the row's cost to its spend in the row's
period (in the budget's time zone: a late event counts in its own period). The first spend row of a (budget,
definition, period) starts from every record already stored in that period, this batch included; later ones add
the batch's part. Rows are upserted in key order, so concurrent batches lock them in the same order and each sees the
spend before and after its own addition: a threshold is crossed by exactly one transaction (a period's first row
counts from nothing, so what was reached before the budget was made is said when it is first counted), and its
alert is inserted with `ON CONFLICT DO NOTHING` on (budget, period, kind, threshold), so replays, re-sends and a
reprice that lowers and raises again can never alert twice.

Why no batch is missed when a budget is made or its scope changes: the api takes the budgets table exclusively for
that, so it waits for every batch that read the old budgets and makes every later batch read the new ones; a batch
committed before is in the first row's sum from the records.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from cg_common.db import Connection

# One statement: the changed records, the budgets covering each, the spend per (budget, period) upserted in order,
# then an alert for every threshold the new spend reaches and the old one did not.
APPLY = """
WITH changed AS (
    SELECT u.occurred_at, u.key_id, u.source, u.provider, u.model, u.attributes, c.added
    FROM unnest(%(ids)s::bigint[], %(added)s::numeric[]) AS c(id, added)
    JOIN usage_events u ON u.id = c.id
    WHERE c.added <> 0 AND EXISTS (SELECT FROM budgets WHERE deleted_at IS NULL)  -- no budget: nothing read
),
hits AS (
    SELECT b.id AS budget_id, b.definition, b.scope,
           date_trunc(b.period, ch.occurred_at, b.timezone) AS period_start,
           (date_trunc(b.period, ch.occurred_at, b.timezone) AT TIME ZONE b.timezone + ('1 ' || b.period)::interval)
               AT TIME ZONE b.timezone AS period_end,
           sum(ch.added) AS added
    FROM changed ch
    JOIN budgets b ON b.deleted_at IS NULL
                  AND budget_covers(b.scope, ch.key_id, ch.source, ch.provider, ch.model, ch.attributes)
    GROUP BY 1, 2, 3, 4, 5
),
upserted AS (
    INSERT INTO budget_spend (budget_id, definition, period_start, period_end, spent, last_added)
    SELECT h.budget_id, h.definition, h.period_start, h.period_end,
           CASE WHEN s.budget_id IS NOT NULL THEN h.added ELSE (
               SELECT coalesce(sum(e.cost), 0) FROM usage_events e
               WHERE e.occurred_at >= h.period_start AND e.occurred_at < h.period_end
                 AND budget_covers(h.scope, e.key_id, e.source, e.provider, e.model, e.attributes)
           ) END,
           h.added
    FROM hits h
    LEFT JOIN budget_spend s
        ON (s.budget_id, s.definition, s.period_start) = (h.budget_id, h.definition, h.period_start)
    ORDER BY h.budget_id, h.definition, h.period_start
    ON CONFLICT (budget_id, definition, period_start) DO UPDATE
        SET spent = budget_spend.spent + EXCLUDED.last_added, last_added = EXCLUDED.last_added
    -- A period's first row (xmax = 0: inserted, not updated) reports from nothing: thresholds reached before the
    -- budget existed, or before its scope changed, are said once now.
    RETURNING budget_id, period_start, period_end,
              CASE WHEN xmax = 0 THEN 0 ELSE spent - last_added END AS before, spent AS after
)
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
"""


async def apply(conn: Connection, ids: Sequence[int], added: Sequence[Decimal | None]) -> list[str]:
    """Add `added[i]` (a new row's cost, or a repriced row's difference) of record `ids[i]` to the spend of every
    budget covering it, in the caller's transaction; returns the ids of the alerts this decided."""
    if not ids:
        return []
    costs = [value or Decimal(0) for value in added]
    if not any(costs):
        return []
    cursor = await conn.execute(APPLY, {"ids": list(ids), "added": costs})
    return [row["id"] for row in await cursor.fetchall()]
