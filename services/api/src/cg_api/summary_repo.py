"""GET /usage/summary's SQL: exact for any time range, and fast over months.

A range [since, until) is cut into the full UTC days inside it (read from usage_rollup_daily), the full hours left at
either end of those days (usage_rollup_hourly) and the partial hours at the very edges (usage_events, by the
(occurred_at) index). Sums the ledger recorded but has not folded into the roll-ups yet (usage_rollup_pending, in the
same transaction as their records) are added for the whole hours. All parts are read by one statement, from one
snapshot, so they add up to exactly what a scan of usage_events would, while a year costs a few thousand roll-up rows
instead of millions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from psycopg import sql

from cg_api.buckets import DAY, EARLIEST_BUCKET, HOUR, LATEST_BUCKET, ceil, floor
from cg_common.db import Connection

FIGURES = ("events", "requests", "input_tokens", "cached_input_tokens", "output_tokens", "cost", "unpriced_events")

# The group column in each source: a roll-up's day, or the UTC day of a record.
_GROUP_COLUMN = {"key": "key_id", "model": "model", "source": "source", "provider": "provider"}
_DAY_OF = {
    "usage_rollup_daily": sql.SQL("bucket"),
    "usage_rollup_hourly": sql.SQL("(bucket AT TIME ZONE 'UTC')::date"),
    "usage_rollup_pending": sql.SQL("(bucket AT TIME ZONE 'UTC')::date"),
    "usage_events": sql.SQL("(occurred_at AT TIME ZONE 'UTC')::date"),
}
_ROLLUP_FIGURES = sql.SQL("events, requests, input_tokens, cached_input_tokens, output_tokens, cost, unpriced_events")
_RECORD_FIGURES = sql.SQL(
    """1 AS events, requests, input_tokens, cached_input_tokens, output_tokens, coalesce(cost, 0) AS cost,
       (cost IS NULL)::int AS unpriced_events"""
)


@dataclass(frozen=True)
class Filters:
    """Narrow the summary to usage of one key, model, source or provider (any combination): columns every roll-up
    keeps, so a filtered summary is as exact, and as cheap, as an unfiltered one."""

    key_id: int | None = None
    model: str | None = None
    source: str | None = None
    provider: str | None = None

    def conditions(self) -> tuple[list[sql.Composable], list[Any]]:
        given = [(column, value) for column, value in vars(self).items() if value is not None]
        return [sql.SQL(" AND {} = %s").format(sql.Identifier(column)) for column, _ in given], [v for _, v in given]


@dataclass(frozen=True)
class Spans:
    """Where each part of [since, until) is read from; every range is half-open and they do not overlap."""

    days: tuple[date, date] | None = None
    hours: list[tuple[datetime, datetime]] = field(default_factory=list)
    raw: list[tuple[datetime, datetime]] = field(default_factory=list)
    whole_hours: tuple[datetime, datetime] | None = None  # days and hours together: where pending sums count


def split_range(since: datetime, until: datetime) -> Spans:
    """Full UTC days, then full hours, then the rest: `10:17 day 1 → 14:42 day 3` is raw 10:17–11:00, hours 11:00–
    24:00, day 2, hours 00:00–14:00 of day 3, raw 14:00–14:42."""
    if since >= until:
        return Spans()
    first_hour = ceil(max(since, EARLIEST_BUCKET), HOUR)
    end_hour = floor(min(until, LATEST_BUCKET), HOUR)
    if first_hour >= end_hour:
        return Spans(raw=[(since, until)])
    raw = _non_empty([(since, first_hour), (end_hour, until)])
    whole_hours = (first_hour, end_hour)
    first_day, end_day = ceil(first_hour, DAY), floor(end_hour, DAY)
    if first_day >= end_day:
        return Spans(hours=[whole_hours], raw=raw, whole_hours=whole_hours)
    hours = _non_empty([(first_hour, first_day), (end_day, end_hour)])
    return Spans(days=(first_day.date(), end_day.date()), hours=hours, raw=raw, whole_hours=whole_hours)


async def summarize(
    conn: Connection, *, since: datetime, until: datetime, group_by: tuple[str, ...], filters: Filters = Filters()
) -> list[dict[str, Any]]:
    """One row per group (`grp0`, and `grp1` for a second grouping) with the figures summed over [since, until) of
    the usage `filters` selects; where a grouping is `key`, with the key's label, prefix and last4 when the key is
    stored (still there after DELETE /keys, which keeps the row)."""
    arms, params = _arms(split_range(since, until), group_by, filters)
    if not arms:
        return []
    groups = sql.SQL(", ").join(sql.Identifier(f"grp{n}") for n in range(len(group_by)))
    sums = sql.SQL(", ").join(sql.SQL("sum({0}) AS {0}").format(sql.Identifier(f)) for f in FIGURES)
    grouped = sql.SQL("SELECT {}, {} FROM ({}) AS parts GROUP BY {}").format(
        groups, sums, sql.SQL(" UNION ALL ").join(arms), groups
    )
    # Days in order first (a time series per value), else the biggest spend first.
    order: list[sql.Composable] = [
        sql.SQL("g.{} NULLS LAST").format(sql.Identifier(f"grp{n}")) for n, g in enumerate(group_by) if g == "day"
    ]
    order.append(sql.SQL("g.cost DESC, g.events DESC"))
    order += [sql.SQL("g.{} NULLS LAST").format(sql.Identifier(f"grp{n}")) for n in range(len(group_by))]
    if "key" in group_by:
        key_column = sql.Identifier(f"grp{group_by.index('key')}")
        query = sql.SQL(
            "SELECT g.*, k.label, k.prefix, k.last4 FROM ({}) AS g LEFT JOIN api_keys AS k ON k.id = g.{} ORDER BY {}"
        ).format(grouped, key_column, sql.SQL(", ").join(order))
    else:
        query = sql.SQL("SELECT g.* FROM ({}) AS g ORDER BY {}").format(grouped, sql.SQL(", ").join(order))
    cursor = await conn.execute(query, params)
    return await cursor.fetchall()


def _arms(spans: Spans, group_by: tuple[str, ...], filters: Filters) -> tuple[list[sql.Composable], list[Any]]:
    """One SELECT per range, each a plain range scan on its table's leading (bucket or occurred_at) column."""
    arms: list[sql.Composable] = []
    params: list[Any] = []
    conditions, values = filters.conditions()

    def arm(table: str, column: str, figures: sql.Composable, start: object, end: object) -> None:
        groups = sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(
                _DAY_OF[table] if grouping == "day" else sql.Identifier(_GROUP_COLUMN[grouping]),
                sql.Identifier(f"grp{n}"),
            )
            for n, grouping in enumerate(group_by)
        )
        arms.append(
            sql.SQL("SELECT {}, {} FROM {} WHERE {col} >= %s AND {col} < %s{conditions}").format(
                groups,
                figures,
                sql.Identifier(table),
                col=sql.Identifier(column),
                conditions=sql.SQL("").join(conditions),
            )
        )
        params.extend((start, end, *values))

    if spans.days is not None:
        arm("usage_rollup_daily", "bucket", _ROLLUP_FIGURES, *spans.days)
    for start, end in spans.hours:
        arm("usage_rollup_hourly", "bucket", _ROLLUP_FIGURES, start, end)
    if spans.whole_hours is not None:
        arm("usage_rollup_pending", "bucket", _ROLLUP_FIGURES, *spans.whole_hours)
    for start, end in spans.raw:
        arm("usage_events", "occurred_at", _RECORD_FIGURES, start, end)
    return arms, params


def _non_empty(ranges: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    return [(start, end) for start, end in ranges if start < end]
