"""All SQL the api runs on recorded usage, except the summary (summary_repo): pages of records, reset, metrics.

The ledger writes these tables; the api only reads them, and clears them on DELETE /reset through the ledger's
`clear_usage()` function.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from psycopg import sql

from cg_api.buckets import HOUR, LATEST_BUCKET, floor
from cg_common.db import Connection

RECORD_COLUMNS = sql.SQL(
    """id, source, event_id, occurred_at, recorded_at, provider, model, key_id, key_fingerprint, input_tokens,
       cached_input_tokens, output_tokens, requests, cost, price_source, attributes"""
)
RESET_LOCK_TIMEOUT = "5s"
ROLLUP_FILTERS = ("model", "source", "provider")  # filters the roll-ups can answer; key_id has an index of its own
HOURS_PER_LOOKUP = 24


@dataclass(frozen=True, slots=True)
class UsageFilter:
    """What GET /data narrows to; None means "any". The time range is [since, until). `attributes` holds dimension
    filters as (name, value) pairs."""

    key_id: int | None = None
    model: str | None = None
    source: str | None = None
    provider: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    attributes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class HourIndex:
    """Where the hours holding some matching usage are looked up: an hourly roll-up and its pending sums, and the
    conditions that select the filtered value there."""

    hourly: str
    pending: str
    conditions: list[sql.Composable]
    params: list[Any]

    @classmethod
    def for_filter(cls, where: UsageFilter, complete: frozenset[str]) -> HourIndex | None:
        """The key/source/provider/model roll-up for those filters, else a filtered dimension's own roll-up once it
        holds its history; None: only the time index is left."""
        conditions, params = _equal_to(where, ROLLUP_FILTERS)
        if conditions:
            return cls("usage_rollup_hourly", "usage_rollup_pending", conditions, params)
        for name, value in where.attributes:
            if f"attributes.{name}" in complete:
                return cls(
                    "usage_rollup_dimension_hourly",
                    "usage_rollup_dimension_pending",
                    [sql.SQL("grouping = %s"), sql.SQL("value1 = %s")],
                    [f"attributes.{name}", value],
                )
        return None


async def page(
    conn: Connection,
    where: UsageFilter,
    *,
    after: tuple[datetime, int] | None,
    limit: int,
    complete: frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """Up to `limit` records newest first, strictly after the cursor's (occurred_at, id) in that order. `complete`:
    the dimension groupings whose roll-ups hold their history (summary_repo.rolled_up)."""
    index = HourIndex.for_filter(where, complete) if where.key_id is None else None
    if index is not None:
        return await _page_by_hours(conn, where, index, after=after, limit=limit)
    query, params = page_query(where, after=after, limit=limit)
    cursor = await conn.execute(query, params)
    return await cursor.fetchall()


async def _page_by_hours(
    conn: Connection, where: UsageFilter, index: HourIndex, *, after: tuple[datetime, int] | None, limit: int
) -> list[dict[str, Any]]:
    """`page` for a model, source, provider or dimension value: the hours holding such records are read off an
    hourly roll-up (through an index on the value) and the pending sums, newest first, and only those hours of
    usage_events are read. Through the time index alone, a value with no recent records meant reading every record
    since its last one."""
    # Hours are looked up before `below` (exclusive): the cursor's own hour is in (rows at the cursor's very moment
    # may remain), the hour `until` starts is not (it is exclusive).
    ends = [where.until] if where.until is not None else []
    if after is not None and after[0] < LATEST_BUCKET:  # past it, the cursor's hour bounds nothing
        ends.append(floor(after[0], HOUR) + HOUR)
    below = min(ends, default=None)
    oldest = floor(where.since, HOUR) if where.since is not None else None
    rows: list[dict[str, Any]] = []
    while len(rows) < limit:
        hours = await _hours_with_usage(conn, index, below=below, oldest=oldest)
        for hour in hours:
            within = replace(
                where,
                since=max(hour, where.since) if where.since is not None else hour,
                until=min(hour + HOUR, where.until) if where.until is not None else hour + HOUR,
            )
            query, params = page_query(within, after=after, limit=limit - len(rows))
            rows += await (await conn.execute(query, params)).fetchall()
            if len(rows) >= limit:
                break
        if len(hours) < HOURS_PER_LOOKUP:
            break
        below = hours[-1]
    return rows


async def _hours_with_usage(
    conn: Connection, index: HourIndex, *, below: datetime | None, oldest: datetime | None
) -> list[datetime]:
    query, params = hours_query(index, below=below, oldest=oldest)
    cursor = await conn.execute(query, params)
    return [row["bucket"] for row in await cursor.fetchall()]


def hours_query(index: HourIndex, *, below: datetime | None, oldest: datetime | None) -> tuple[sql.Composed, list[Any]]:
    """Up to HOURS_PER_LOOKUP hours (their starts), newest first, starting before `below` and not before `oldest`,
    in which some recorded usage matches the index's value: the SQL and its parameters. Each roll-up is read newest
    hour first through an index on the filtered column and stops at enough hours."""
    conditions, params = list(index.conditions), list(index.params)
    if below is not None:
        conditions.append(sql.SQL("bucket < %s"))
        params.append(below)
    if oldest is not None:
        conditions.append(sql.SQL("bucket >= %s"))
        params.append(oldest)
    matching = sql.SQL(" AND ").join(conditions)
    query = sql.SQL(
        """SELECT bucket FROM (
               (SELECT DISTINCT bucket FROM {hourly} WHERE {matching} ORDER BY bucket DESC LIMIT %s)
               UNION
               (SELECT DISTINCT bucket FROM {pending} WHERE {matching} ORDER BY bucket DESC LIMIT %s)
           ) AS hours ORDER BY bucket DESC LIMIT %s"""
    ).format(matching=matching, hourly=sql.Identifier(index.hourly), pending=sql.Identifier(index.pending))
    return query, [*params, HOURS_PER_LOOKUP, *params, HOURS_PER_LOOKUP, HOURS_PER_LOOKUP]


def page_query(where: UsageFilter, *, after: tuple[datetime, int] | None, limit: int) -> tuple[sql.Composed, list[Any]]:
    """The SQL of `page`, with its parameters.

    Keyset pagination on (occurred_at DESC, id DESC): each page costs the same however deep it is, and rows recorded
    meanwhile never shift a page (OFFSET would skip or repeat them). With `key_id` the key's own index
    (`usage_events_key`) gives its rows in that order, however few it has; the other filters (dimensions included)
    read the time index and skip what does not match, which `page` keeps to the hours that hold matching rows."""
    conditions, params = _equal_to(where, ("key_id", *ROLLUP_FILTERS))
    for name, value in where.attributes:
        conditions.append(sql.SQL("attributes ->> {} = %s").format(sql.Literal(name)))
        params.append(value)
    if where.since is not None:
        conditions.append(sql.SQL("occurred_at >= %s"))
        params.append(where.since)
    if where.until is not None:
        conditions.append(sql.SQL("occurred_at < %s"))
        params.append(where.until)
    if after is not None:
        conditions.append(sql.SQL("(occurred_at, id) < (%s, %s)"))
        params.extend(after)
    where_clause = sql.SQL("WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")
    query = sql.SQL("SELECT {} FROM usage_events {} ORDER BY occurred_at DESC, id DESC LIMIT %s").format(
        RECORD_COLUMNS, where_clause
    )
    return query, [*params, limit]


def _equal_to(where: UsageFilter, columns: tuple[str, ...]) -> tuple[list[sql.Composable], list[Any]]:
    """`column = value` for each of `columns` the filter sets, with the values."""
    values = [(column, getattr(where, column)) for column in columns]
    conditions: list[sql.Composable] = [
        sql.SQL("{} = %s").format(sql.Identifier(column)) for column, value in values if value is not None
    ]
    return conditions, [value for _, value in values if value is not None]


async def clear(conn: Connection) -> None:
    """Every usage record and both roll-ups, in one transaction (keys stay). Gives up after RESET_LOCK_TIMEOUT
    behind a long reader or the ledger's writes, rather than queueing everything else behind its lock."""
    async with conn.transaction():
        await conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(RESET_LOCK_TIMEOUT)))
        await conn.execute("SELECT clear_usage()")


async def figures(conn: Connection) -> dict[str, Any]:
    """Records stored and the newest one's time, both cheap however much is stored: the daily roll-up holds a few
    rows per day and, with the sums not folded into it yet, counts every record exactly once; max(occurred_at) is
    the first entry of its index."""
    cursor = await conn.execute(
        """SELECT (SELECT coalesce(sum(events), 0) FROM usage_rollup_daily)
                  + (SELECT coalesce(sum(events), 0) FROM usage_rollup_pending) AS usage_rows,
                  (SELECT max(occurred_at) FROM usage_events) AS last_usage_at"""
    )
    row = await cursor.fetchone()
    return row or {"usage_rows": 0, "last_usage_at": None}
