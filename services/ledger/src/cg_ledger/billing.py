"""Billed costs (`cg.billing.>`, stream CG_BILLING) into `billed_costs`: one upsert per batch, newest pull wins.

Idempotent: the same message twice writes the same row; an older pull redelivered late never overwrites a newer one.
"""

from __future__ import annotations

from collections.abc import Sequence

from nats.aio.msg import Msg
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError

from cg_common.billing import BilledCost
from cg_common.clock_skew import day_in_future
from cg_common.consumer import Outcome, TransientError
from cg_common.db import TRANSIENT_DB_ERRORS, Connection

UPSERT = """
INSERT INTO billed_costs (source, day, project_id, line_item, amount, currency, pulled_at)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (source, day, project_id, line_item) DO UPDATE
SET amount = EXCLUDED.amount, currency = EXCLUDED.currency, pulled_at = EXCLUDED.pulled_at, recorded_at = now()
WHERE billed_costs.pulled_at <= EXCLUDED.pulled_at
"""


class BilledCostRecorder:
    def __init__(self, db: AsyncConnectionPool[Connection]) -> None:
        self._db = db

    async def __call__(self, messages: Sequence[Msg]) -> list[Outcome]:
        outcomes = []
        rows = []
        for message in messages:
            try:
                cost = BilledCost.model_validate_json(message.data)
            except ValidationError as error:
                outcomes.append(Outcome.dead_letter(f"not a billed cost: {error.error_count()} invalid fields"))
                continue
            if day_in_future(cost.day):
                outcomes.append(
                    Outcome.dead_letter(f"billed cost for a day that has not begun: {cost.day.isoformat()}")
                )
                continue
            rows.append(
                (cost.source, cost.day, cost.project_id, cost.line_item, cost.amount, cost.currency, cost.pulled_at)
            )
            outcomes.append(Outcome.done())
        if rows:
            try:
                async with self._db.connection() as conn, conn.transaction(), conn.cursor() as cursor:
                    await cursor.executemany(UPSERT, rows)
            except TRANSIENT_DB_ERRORS as error:
                raise TransientError(f"billed costs not stored: {type(error).__name__}") from error
        return outcomes
