"""All SQL on reservations (the api's tables, docs/admission.md): the decision itself is `admit_reservation`, one
function in PostgreSQL holding the locks of every hard budget the request falls under."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from cg_common.db import Connection

ADMIT = "SELECT * FROM admit_reservations(%s) ORDER BY n"


async def admit_batch(conn: Connection, requests: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The decisions for `requests` (each: id, key_id, key_fingerprint, source, provider, model, attributes, amount,
    ttl_secs, request), in order, in the caller's transaction."""
    cursor = await conn.execute(ADMIT, (Jsonb(list(requests)),))
    return await cursor.fetchall()


async def release(conn: Connection, reservation_id: UUID) -> str | None:
    """Ends a live reservation as released; returns how it ended (this call's `released`, or how it had ended
    before), None when there is no such reservation."""
    await conn.execute("SELECT * FROM end_reservations(%s, 'released')", ([reservation_id],))
    cursor = await conn.execute("SELECT ended FROM budget_reservations WHERE id = %s", (reservation_id,))
    row = await cursor.fetchone()
    return None if row is None else str(row["ended"])


async def expire(conn: Connection, limit: int) -> int:
    """Ends up to `limit` reservations whose ttl has passed; returns how many."""
    cursor = await conn.execute("SELECT count(*) AS n FROM end_reservations(NULL, 'expired', %s)", (limit,))
    row = await cursor.fetchone()
    return int(row["n"]) if row else 0


async def holds(conn: Connection, budget_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Per budget: what its live reservations hold, and how many requests it refused."""
    cursor = await conn.execute(
        "SELECT budget_id, reserved, refusals FROM budget_holds WHERE budget_id = ANY(%s)", (list(budget_ids),)
    )
    return {row["budget_id"]: row for row in await cursor.fetchall()}


async def overrun(conn: Connection, budget_id: int, since: datetime) -> Decimal:
    """What reservations settled since `since` cost beyond what they held, for this budget."""
    cursor = await conn.execute(
        """SELECT coalesce(sum(settled_cost - amount), 0) AS overrun FROM budget_reservations
           WHERE ended = 'settled' AND settled_cost > amount AND budget_ids @> ARRAY[%s]::bigint[]
             AND ended_at >= %s""",
        (budget_id, since),
    )
    row = await cursor.fetchone()
    return Decimal(row["overrun"]) if row else Decimal(0)


async def figures(conn: Connection) -> dict[str, Any]:
    """For /metrics: refusals so far, reservations that ran over, and what is held now."""
    cursor = await conn.execute(
        """SELECT (SELECT coalesce(sum(refusals), 0) FROM budget_holds) AS refusals,
                  (SELECT count(*) FROM budget_reservations WHERE ended = 'settled' AND settled_cost > amount)
                      AS overruns,
                  (SELECT count(*) FROM budget_reservations WHERE ended IS NULL) AS live_reservations"""
    )
    row = await cursor.fetchone()
    assert row is not None  # noqa: S101 - one row of scalars
    return {name: int(value) for name, value in row.items()}
