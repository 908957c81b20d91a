"""Budget alerts onto `cg.alert.budget`, from the ledger's table of them (an outbox): an alert is decided in the
transaction that records the usage, and published after that commits, with its id as `Nats-Msg-Id`.

Right after each batch the recorder publishes the alerts it decided; every fold round, whatever is still unpublished
(a crash, a NATS outage) goes out too. Rows are taken `FOR UPDATE SKIP LOCKED`, so replicas do not publish the same
alert at once; one published twice anyway (a crash between the publish and the mark) is held once by the stream's
duplicate window of a day.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from psycopg_pool import AsyncConnectionPool

from cg_common.db import Connection
from cg_common.logging import get_logger
from cg_common.money import money_text
from cg_common.publishing import Outgoing, PublishError, publish_all
from cg_common.subjects import ALERT_BUDGET

log = get_logger(__name__)

BATCH = 200
PENDING = """
SELECT a.id, a.type, a.threshold, a.period_start, a.period_end, a.spent, a.forecast, a.occurred_at,
       b.id AS budget_id, b.name, b.amount, b.period, b.timezone, b.scope
FROM budget_alerts a JOIN budgets b ON b.id = a.budget_id
WHERE a.published_at IS NULL AND (%(ids)s::text[] IS NULL OR a.id = ANY(%(ids)s))
ORDER BY a.occurred_at, a.id
LIMIT %(limit)s
FOR UPDATE OF a SKIP LOCKED
"""


def alert_message(row: dict[str, Any]) -> Outgoing:
    """The contract's alert JSON (section 8); money as decimal strings, times in UTC."""
    body = {
        "id": row["id"],
        "type": row["type"],
        "budget": {
            "id": row["budget_id"],
            "name": row["name"],
            "amount": money_text(row["amount"]),
            "period": row["period"],
            "timezone": row["timezone"],
            "scope": row["scope"],
        },
        "threshold": row["threshold"],
        "period_start": row["period_start"],
        "period_end": row["period_end"],
        "spent": money_text(row["spent"]),
        "forecast": None if row["forecast"] is None else money_text(row["forecast"]),
        "occurred_at": row["occurred_at"],
    }
    return Outgoing(ALERT_BUDGET, orjson.dumps(body, option=orjson.OPT_UTC_Z), row["id"])


class AlertPublisher:
    def __init__(self, db: AsyncConnectionPool[Connection], nc: NATS) -> None:
        self._db = db
        self._nc = nc

    async def publish(self, ids: Sequence[str] | None = None) -> int:
        """Publish the unpublished alerts (only `ids` if given) and mark them; returns how many went out. A NATS
        fault is logged and left for the next round: the alerts stay unpublished, never lost."""
        published = 0
        while True:
            async with self._db.connection() as conn, conn.transaction():
                cursor = await conn.execute(PENDING, {"ids": list(ids) if ids is not None else None, "limit": BATCH})
                rows = await cursor.fetchall()
                if not rows:
                    return published
                try:
                    await publish_all(self._nc, [alert_message(row) for row in rows])
                except PublishError as error:
                    log.warning("budget alerts not acknowledged; retrying next round", error=str(error)[:300])
                    return published
                await conn.execute(
                    "UPDATE budget_alerts SET published_at = now() WHERE id = ANY(%s)", ([row["id"] for row in rows],)
                )
            published += len(rows)
