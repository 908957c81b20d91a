"""`cg-ledger reprice`: price stored usage again after the price data changed (a newer genai-prices).

By default only rows stored without a price (their model was unknown); `--all` re-prices everything, e.g. after a
correction in the price data. Rows are taken in id order, a batch per transaction, each locked while it is changed,
and the roll-ups move by exactly the difference, so summaries stay equal to the sum of the rows throughout.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from cg_common.db import Connection
from cg_common.pricing import Pricer
from cg_ledger.store import Repriced, apply_reprices, rows_to_reprice

BATCH = 1000


@dataclass(frozen=True)
class RepriceReport:
    examined: int
    changed: int
    still_unpriced: int


async def reprice(db: AsyncConnectionPool[Connection], pricer: Pricer, *, unpriced_only: bool = True) -> RepriceReport:
    examined = changed = still_unpriced = 0
    after_id = 0
    while True:
        async with db.connection() as conn, conn.transaction():
            rows = await rows_to_reprice(conn, after_id=after_id, limit=BATCH, unpriced_only=unpriced_only)
            if not rows:
                break
            changes = []
            for row in rows:
                price = pricer.price(
                    row["provider"],
                    row["model"],
                    row["occurred_at"],
                    input_tokens=row["input_tokens"],
                    cached_input_tokens=row["cached_input_tokens"],
                    output_tokens=row["output_tokens"],
                    requests=row["requests"],
                )
                still_unpriced += price.cost is None
                if (price.cost, price.source) != (row["cost"], row["price_source"]):
                    changes.append(
                        Repriced(
                            id=row["id"],
                            occurred_at=row["occurred_at"],
                            key_id=row["key_id"],
                            source=row["source"],
                            provider=row["provider"],
                            model=row["model"],
                            old_cost=row["cost"],
                            new_cost=price.cost,
                            price_source=price.source,
                        )
                    )
            await apply_reprices(conn, changes)
        examined += len(rows)
        changed += len(changes)
        after_id = rows[-1]["id"]
    return RepriceReport(examined=examined, changed=changed, still_unpriced=still_unpriced)
