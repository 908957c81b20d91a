"""All SQL on budgets (the api's table): made, listed, changed, deleted (kept, marked deleted)."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from cg_common.db import Connection

COLUMNS = (
    "id, name, amount, period, timezone, scope, thresholds, hard, definition, opening_period_start, created_at, "
    "updated_at"
)
EDITABLE = ("name", "amount", "period", "timezone", "scope", "thresholds", "hard")
# What the spend is counted under: changing one starts a new definition, whose spend the ledger sums afresh.
COUNTED_UNDER = ("period", "timezone", "scope")
# The ledger reads budgets in the statement that records each batch: taking the table exclusively waits for the
# batches that read the old budgets and makes the later ones read the new, so none is missed (cg_ledger.budget_spend).
LOCK = "LOCK TABLE budgets IN ACCESS EXCLUSIVE MODE"


async def lock(conn: Connection) -> None:
    """Before a definition's opening is summed: see LOCK."""
    await conn.execute(LOCK)


async def insert(conn: Connection, values: dict[str, Any]) -> dict[str, Any]:
    """`values` with the opening (`opening_period_start`, `opening_spent`), summed after `lock`."""
    cursor = await conn.execute(
        f"""INSERT INTO budgets (name, amount, period, timezone, scope, thresholds, hard, opening_period_start,
                                 opening_spent)
            VALUES (%(name)s, %(amount)s, %(period)s, %(timezone)s, %(scope)s, %(thresholds)s, %(hard)s,
                    %(opening_period_start)s, %(opening_spent)s)
            RETURNING {COLUMNS}""",  # noqa: S608 - constant columns
        {**values, "scope": Jsonb(values["scope"])},
    )
    row = await cursor.fetchone()
    assert row is not None  # noqa: S101 - INSERT … RETURNING returns its row
    return row


async def live(conn: Connection, budget_id: int | None = None) -> list[dict[str, Any]]:
    """Budgets not deleted, by id; only `budget_id`'s if given."""
    cursor = await conn.execute(
        f"""SELECT {COLUMNS} FROM budgets WHERE deleted_at IS NULL AND (%(id)s::bigint IS NULL OR id = %(id)s)
            ORDER BY id""",  # noqa: S608 - constant columns
        {"id": budget_id},
    )
    return await cursor.fetchall()


async def update(conn: Connection, budget_id: int, changes: dict[str, Any]) -> dict[str, Any] | None:
    """Apply `changes` (a subset of EDITABLE; with the new definition's opening when one of COUNTED_UNDER changes,
    summed after `lock`) to a live budget; None if there is none with this id."""
    assignments = ", ".join(f"{name} = %({name})s" for name in changes if name in EDITABLE)
    if "opening_spent" in changes:
        assignments += ", definition = definition + 1, opening_period_start = %(opening_period_start)s"
        assignments += ", opening_spent = %(opening_spent)s"
    values = {**changes, "id": budget_id}
    if "scope" in values:
        values["scope"] = Jsonb(values["scope"])
    cursor = await conn.execute(
        f"""UPDATE budgets SET {assignments.lstrip(", ") + ", " if assignments else ""}updated_at = now()
            WHERE id = %(id)s AND deleted_at IS NULL RETURNING {COLUMNS}""",  # noqa: S608 - names from EDITABLE
        values,
    )
    return await cursor.fetchone()


async def delete(conn: Connection, budget_id: int) -> bool:
    cursor = await conn.execute(
        "UPDATE budgets SET deleted_at = now() WHERE id = %s AND deleted_at IS NULL RETURNING id", (budget_id,)
    )
    return await cursor.fetchone() is not None
