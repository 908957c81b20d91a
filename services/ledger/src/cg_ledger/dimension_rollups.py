"""Which groupings the dimension roll-ups hold, and rebuilding a grouping's history from usage_events.

The list lives in `usage_rollup_groupings`, read by the statement that records each batch (`store.RECORD_STAGED`),
so every ledger replica rolls up the same groupings. A ledger brings the list to its DIMENSIONS and DIMENSION_PAIRS
when it starts. A grouping added while usage is already stored lacks its history: it is marked incomplete (the api
then answers from usage_events, exact but slower) until `rebuild` has summed the history, which the ledger does by
itself (`RollupFolder`) or `cg-ledger rebuild-rollups` does on demand.

Why a rebuild counts every record exactly once while batches keep arriving: a change to the list takes the list's
table exclusively, so it waits for every batch that read the old list and makes every later batch wait and then read
the new one. The rebuild sums usage_events as of one snapshot (REPEATABLE READ) and, in the same transaction, drops
the grouping's roll-up rows and the pending sums that snapshot sees: batches committed before it are in the sum,
batches committed after it left pending sums that the next fold adds. Folds wait for the rebuild (the fold lock).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from psycopg import IsolationLevel
from psycopg_pool import AsyncConnectionPool

from cg_common.db import Connection
from cg_common.dimensions import Grouping
from cg_ledger.store import DIMENSION_ROLLUP_COLUMNS, FOLD_LOCK, MEMBER_VALUES, PENDING_SUMS, ROLLUP_SUMS

DIMENSION_TABLES = (
    "usage_rollup_dimension_pending",
    "usage_rollup_dimension_hourly",
    "usage_rollup_dimension_daily",
    "usage_rollup_dimension_monthly",
)

# Hourly groupings: hours from the records, days from the hours. Coarse ones (no hourly tier): days from the records,
# months from the days.
REBUILD_HOURLY = f"""
INSERT INTO usage_rollup_dimension_hourly ({DIMENSION_ROLLUP_COLUMNS})
SELECT g.grouping, date_trunc('hour', u.occurred_at, 'UTC'), {MEMBER_VALUES.format(row="u")}, {ROLLUP_SUMS}
FROM usage_events u JOIN usage_rollup_groupings g ON g.grouping = ANY(%(names)s) AND NOT g.coarse
GROUP BY 1, 2, 3, 4
"""  # noqa: S608 - composed from constants only
REBUILD_DAILY = f"""
INSERT INTO usage_rollup_dimension_daily ({DIMENSION_ROLLUP_COLUMNS})
SELECT grouping, (bucket AT TIME ZONE 'UTC')::date, value1, value2, {PENDING_SUMS}
FROM usage_rollup_dimension_hourly WHERE grouping = ANY(%(names)s)
GROUP BY 1, 2, 3, 4
"""  # noqa: S608 - composed from constants only
REBUILD_COARSE_DAILY = f"""
INSERT INTO usage_rollup_dimension_daily ({DIMENSION_ROLLUP_COLUMNS})
SELECT g.grouping, (u.occurred_at AT TIME ZONE 'UTC')::date, {MEMBER_VALUES.format(row="u")}, {ROLLUP_SUMS}
FROM usage_events u JOIN usage_rollup_groupings g ON g.grouping = ANY(%(names)s) AND g.coarse
GROUP BY 1, 2, 3, 4
"""  # noqa: S608 - composed from constants only
REBUILD_MONTHLY = f"""
INSERT INTO usage_rollup_dimension_monthly ({DIMENSION_ROLLUP_COLUMNS})
SELECT d.grouping, date_trunc('month', d.bucket)::date, d.value1, d.value2, {PENDING_SUMS}
FROM usage_rollup_dimension_daily d JOIN usage_rollup_groupings g ON g.grouping = d.grouping AND g.coarse
WHERE d.grouping = ANY(%(names)s)
GROUP BY 1, 2, 3, 4
"""  # noqa: S608 - composed from constants only
# In this order: the daily sums of hourly groupings come from their hours, the monthly ones from the days.
REBUILDS = (REBUILD_HOURLY, REBUILD_COARSE_DAILY, REBUILD_DAILY, REBUILD_MONTHLY)


@dataclass(frozen=True)
class ListChanges:
    added: list[str]
    removed: list[str]
    incomplete: list[str]  # added (or changed tier) while usage was stored: their history waits for a rebuild
    retiered: list[str]  # turned coarse or back: summed again by the rebuild


async def bring_list_to(conn: Connection, groupings: Sequence[Grouping]) -> ListChanges:
    """Make the list hold exactly `groupings`, each in its tier, in one transaction: removed ones go with their
    roll-up rows; added ones are complete at once only if no usage is stored yet; one whose tier changed (coarse or
    not) is marked incomplete, to be summed again in its new tier (until then the api reads the records)."""
    wanted = {grouping.name: grouping for grouping in groupings}
    async with conn.transaction():
        await conn.execute("LOCK TABLE usage_rollup_groupings IN ACCESS EXCLUSIVE MODE")
        current = {
            row["grouping"]: row["coarse"]
            for row in await (await conn.execute("SELECT grouping, coarse FROM usage_rollup_groupings")).fetchall()
        }
        removed = sorted(current.keys() - wanted.keys())
        added = sorted(wanted.keys() - current.keys())
        retiered = sorted(name for name in current.keys() & wanted.keys() if current[name] != wanted[name].coarse)
        if removed:
            await conn.execute("DELETE FROM usage_rollup_groupings WHERE grouping = ANY(%s)", (removed,))
            for table in DIMENSION_TABLES:
                await conn.execute(f"DELETE FROM {table} WHERE grouping = ANY(%s)", (removed,))  # noqa: S608
        row = await (await conn.execute("SELECT NOT EXISTS (SELECT FROM usage_events) AS empty")).fetchone()
        empty = bool(row and row["empty"])
        if retiered:
            await conn.execute(
                """UPDATE usage_rollup_groupings SET coarse = NOT coarse, complete = %s, changed_at = now()
                   WHERE grouping = ANY(%s)""",
                (empty, retiered),
            )
        if added:
            await conn.execute(
                """INSERT INTO usage_rollup_groupings (grouping, first_member, second_member, coarse, complete)
                   SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::boolean[], %s::boolean[])""",
                (
                    added,
                    [wanted[name].first for name in added],
                    [wanted[name].second for name in added],
                    [wanted[name].coarse for name in added],
                    [empty] * len(added),
                ),
            )
    return ListChanges(
        added=added, removed=removed, incomplete=[] if empty else sorted(added + retiered), retiered=retiered
    )


async def incomplete(conn: Connection) -> list[str]:
    """Groupings whose history is not summed yet."""
    cursor = await conn.execute("SELECT grouping FROM usage_rollup_groupings WHERE NOT complete ORDER BY grouping")
    return [row["grouping"] for row in await cursor.fetchall()]


async def rebuild(db: AsyncConnectionPool[Connection], names: Sequence[str] | None = None) -> list[str]:
    """Sum the history of the named groupings (default: the incomplete ones) again from usage_events and mark them
    complete; returns the groupings rebuilt. Folds wait meanwhile; batches keep being recorded."""
    async with db.connection() as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (FOLD_LOCK,))  # held by the session, across transactions
        await conn.commit()
        try:
            await conn.set_isolation_level(IsolationLevel.REPEATABLE_READ)
            async with conn.transaction():
                chosen = await _chosen(conn, names)
                if chosen:
                    await _sum_again(conn, chosen)
            return chosen
        finally:
            await conn.set_isolation_level(None)
            await conn.execute("SELECT pg_advisory_unlock(%s)", (FOLD_LOCK,))
            await conn.commit()


async def _chosen(conn: Connection, names: Sequence[str] | None) -> list[str]:
    if names is None:
        return await incomplete(conn)
    cursor = await conn.execute(
        "SELECT grouping FROM usage_rollup_groupings WHERE grouping = ANY(%s) ORDER BY grouping", (list(names),)
    )
    found = [row["grouping"] for row in await cursor.fetchall()]
    missing = sorted(set(names) - set(found))
    if missing:
        raise LookupError(f"not a rolled-up grouping: {', '.join(missing)} (DIMENSIONS and DIMENSION_PAIRS say which)")
    return found


async def _sum_again(conn: Connection, names: list[str]) -> None:
    for table in DIMENSION_TABLES:
        await conn.execute(f"DELETE FROM {table} WHERE grouping = ANY(%s)", (names,))  # noqa: S608
    for statement in REBUILDS:
        await conn.execute(statement, {"names": names})
    await conn.execute(
        "UPDATE usage_rollup_groupings SET complete = true, changed_at = now() WHERE grouping = ANY(%s)", (names,)
    )
