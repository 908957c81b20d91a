"""Settling admission reservations (docs/admission.md), in the transaction that records the usage events naming
them: the reservation ends, what it held goes back to its budgets, and the event's cost counts as spent through the
budget spend kept in that same transaction. Only newly recorded events settle, and a reservation settles once (the
api's `settle_reservations`, the one way the ledger may change the api's reservations); a re-sent event or a second
event naming the same reservation changes nothing there."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import NamedTuple

from cg_common.db import Connection


class Settlement(NamedTuple):
    reservation_id: str
    cost: Decimal | None  # None: the event could not be priced; it settles at 0
    event: str  # source, a space, id


async def settle(conn: Connection, settlements: Sequence[Settlement]) -> list[Decimal]:
    """Returns, per reservation settled now, what its event cost beyond what it held (0 when within)."""
    if not settlements:
        return []
    cursor = await conn.execute(
        "SELECT overrun FROM settle_reservations(%s::uuid[], %s::numeric[], %s::text[])",
        (
            [s.reservation_id for s in settlements],
            [s.cost for s in settlements],
            [s.event for s in settlements],
        ),
    )
    return [Decimal(row["overrun"]) for row in await cursor.fetchall()]
