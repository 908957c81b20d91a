"""GET /usage/summary's SQL: exact for any time range, and fast over months.

A range [since, until) is cut into the full UTC days inside it (read from a daily roll-up), the full hours left at
either end of those days (an hourly roll-up) and the partial hours at the very edges (usage_events, by the
(occurred_at) index). Sums the ledger recorded but has not folded into the roll-ups yet (the pending sums, in the same
transaction as their records) are added for the whole hours. All parts are read by one statement, from one
snapshot, so they add up to exactly what a scan of usage_events would, while a year costs a few thousand roll-up rows
instead of millions.

Which roll-ups: key, source, provider and model are in every row of usage_rollup_*; a dimension (`attributes.team`)
is in the dimension roll-ups of a grouping that holds it (alone, or paired with what the query also groups or
filters by). A query no complete grouping covers is summed from usage_events over the whole range: exact, slower.
A coarse grouping (daily and monthly roll-ups, no hourly one) is read as signed parts instead (`coarse_spans`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

from psycopg import sql
from psycopg.pq import TransactionStatus

from cg_api import coarse_spans
from cg_api.buckets import DAY, EARLIEST_BUCKET, HOUR, LATEST_BUCKET, ceil, floor
from cg_common.db import Connection
from cg_common.dimensions import Grouping, attribute_of, is_dimension_member

FIGURES = ("events", "requests", "input_tokens", "cached_input_tokens", "output_tokens", "cost", "unpriced_events")

BASE_COLUMN = {"key": "key_id", "model": "model", "source": "source", "provider": "provider"}
_ROLLUP_FIGURES = sql.SQL("events, requests, input_tokens, cached_input_tokens, output_tokens, cost, unpriced_events")
_RECORD_FIGURES = sql.SQL(
    """1 AS events, requests, input_tokens, cached_input_tokens, output_tokens, coalesce(cost, 0) AS cost,
       (cost IS NULL)::int AS unpriced_events"""
)
# Each figure of a roll-up row or of a record, as summed (a record is one event, its cost 0 when unpriced).
_ROLLUP_TERMS = {name: sql.Identifier(name) for name in FIGURES}
_RECORD_TERMS: dict[str, sql.Composable] = {
    **_ROLLUP_TERMS,
    "events": sql.SQL("1"),
    "cost": sql.SQL("coalesce(cost, 0)"),
    "unpriced_events": sql.SQL("(cost IS NULL)::int"),
}
Kind = Literal["base", "dimension", "records"]
_TABLES: dict[Kind, tuple[str, str, str]] = {  # daily, hourly, pending
    "base": ("usage_rollup_daily", "usage_rollup_hourly", "usage_rollup_pending"),
    "dimension": ("usage_rollup_dimension_daily", "usage_rollup_dimension_hourly", "usage_rollup_dimension_pending"),
}


@dataclass(frozen=True)
class Filters:
    """Narrow the summary to usage of one key, model, source, provider and dimension values (any combination; all
    must match). `attributes` holds (name, value) pairs: `attributes.team=search` is ("team", "search")."""

    key_id: int | None = None
    model: str | None = None
    source: str | None = None
    provider: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()

    def by_member(self) -> dict[str, str | int]:
        """Each filter under its grouping member's name: `key`, `model`, … `attributes.team`."""
        given: dict[str, str | int] = {
            member: value
            for member, value in (
                ("key", self.key_id),
                ("model", self.model),
                ("source", self.source),
                ("provider", self.provider),
            )
            if value is not None
        }
        return given | {f"attributes.{name}": value for name, value in self.attributes}


@dataclass(frozen=True)
class RolledUp:
    """The dimension groupings the ledger rolls up (usage_rollup_groupings), and which of them hold their history."""

    groupings: tuple[Grouping, ...] = ()
    complete: frozenset[str] = frozenset()

    @property
    def hourly(self) -> frozenset[str]:
        """The complete groupings with an hourly roll-up (not coarse): what GET /data may look hours up in."""
        return self.complete - {g.name for g in self.groupings if g.coarse}

    @property
    def dimensions(self) -> tuple[str, ...]:
        """The dimension names (`team`), from the single-dimension groupings."""
        return tuple(attribute_of(g.first) for g in self.groupings if g.second is None)

    def covering(self, members: set[str]) -> Grouping | None:
        """The smallest complete grouping holding every member, if any."""
        fitting = [g for g in self.groupings if g.name in self.complete and members <= set(g.members)]
        return min(fitting, key=lambda g: len(g.members), default=None)


async def rolled_up(conn: Connection, *, one_snapshot: bool = True) -> RolledUp:
    """The groupings. With `one_snapshot` (for a request that only reads), read in the same snapshot as the
    summaries that follow when this is the transaction's first statement, so that a grouping being rebuilt or
    dropped meanwhile cannot be half seen."""
    if one_snapshot and conn.info.transaction_status == TransactionStatus.IDLE:
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    cursor = await conn.execute(
        """SELECT first_member, second_member, coarse, grouping, complete FROM usage_rollup_groupings
           ORDER BY grouping"""
    )
    rows = await cursor.fetchall()
    return RolledUp(
        tuple(Grouping(row["first_member"], row["second_member"], row["coarse"]) for row in rows),
        frozenset(row["grouping"] for row in rows if row["complete"]),
    )


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


@dataclass(frozen=True)
class Plan:
    """Which tables answer a query: the key/source/provider/model roll-ups, one dimension grouping's roll-ups, or
    the records alone."""

    kind: Kind
    grouping: Grouping | None = None

    @classmethod
    def choose(cls, group_by: tuple[str, ...], filters: Filters, rolled: RolledUp) -> Plan:
        members = {g for g in group_by if g != "day"} | set(filters.by_member())
        if not any(is_dimension_member(m) for m in members):
            return cls("base")
        grouping = rolled.covering(members)
        return cls("dimension", grouping) if grouping is not None else cls("records")

    def expression(self, member: str, *, records: bool) -> sql.Composable:
        """The SQL of a member's value in the records (usage_events) or in this plan's roll-ups."""
        if records or self.kind == "base":
            if is_dimension_member(member):
                return sql.SQL("(attributes ->> {})").format(sql.Literal(attribute_of(member)))
            return sql.Identifier(BASE_COLUMN[member])
        assert self.grouping is not None  # noqa: S101 - a dimension plan has its grouping
        return sql.Identifier(f"value{self.grouping.members.index(member) + 1}")


async def summarize(
    conn: Connection,
    *,
    since: datetime,
    until: datetime,
    group_by: tuple[str, ...],
    filters: Filters = Filters(),
    rolled: RolledUp = RolledUp(),
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """One row per group (`grp0`, and `grp1` for a second grouping) with the figures summed over [since, until) of
    the usage `filters` selects; where a grouping is `key`, with the key's label, prefix and last4 when the key is
    stored (still there after DELETE /keys, which keeps the row). `now` only steers a coarse grouping's choice of
    parts (default: the clock)."""
    plan = Plan.choose(group_by, filters, rolled)
    signed = plan.grouping is not None and plan.grouping.coarse
    if signed:
        parts = coarse_spans.cut(since, until, now or datetime.now(UTC), months="day" not in group_by)
        arms, params = _coarse_arms(parts, plan, group_by, filters)
    else:
        spans = split_range(since, until) if plan.kind != "records" else Spans(raw=_non_empty([(since, until)]))
        arms, params = _arms(spans, plan, group_by, filters)
    if not arms:
        return []
    groups = sql.SQL(", ").join(sql.Identifier(f"grp{n}") for n in range(len(group_by)))
    # Counts come back as bigint, not numeric: thousands of groups decode as ints, not Decimals.
    sums = sql.SQL(", ").join(
        sql.SQL("sum({0}) AS {0}" if f == "cost" else "sum({0})::bigint AS {0}").format(sql.Identifier(f))
        for f in FIGURES
    )
    # Signed parts: a value whose parts cancel out had no usage in the range.
    having = sql.SQL(" HAVING sum(events) <> 0") if signed else sql.SQL("")
    grouped = sql.SQL("SELECT {}, {} FROM ({}) AS parts GROUP BY {}{}").format(
        groups, sums, sql.SQL(" UNION ALL ").join(arms), groups, having
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


def _arms(
    spans: Spans, plan: Plan, group_by: tuple[str, ...], filters: Filters
) -> tuple[list[sql.Composable], list[Any]]:
    """One SELECT per range, each a plain range scan on its table's leading (bucket or occurred_at) column, or on
    the grouping and bucket of a dimension roll-up."""
    arms: list[sql.Composable] = []
    params: list[Any] = []
    wanted = filters.by_member()

    def arm(table: str, day_of: sql.Composable, start: object, end: object) -> None:
        records = table == "usage_events"
        time = sql.Identifier("occurred_at" if records else "bucket")
        groups = []
        for n, member in enumerate(group_by):
            column = day_of if member == "day" else plan.expression(member, records=records)
            if member == "key" and plan.kind == "dimension" and not records:
                column = sql.SQL("{}::bigint").format(column)
            groups.append(sql.SQL("{} AS {}").format(column, sql.Identifier(f"grp{n}")))
        conditions: list[sql.Composable] = [sql.SQL("{t} >= %s AND {t} < %s").format(t=time)]
        values: list[Any] = [start, end]
        if plan.kind == "dimension" and not records:
            assert plan.grouping is not None  # noqa: S101 - a dimension plan has its grouping
            conditions.insert(0, sql.SQL("grouping = %s"))
            values.insert(0, plan.grouping.name)
        for member, value in wanted.items():
            conditions.append(sql.SQL("{} = %s").format(plan.expression(member, records=records)))
            as_text = (plan.kind == "dimension" and not records) or is_dimension_member(member)
            values.append(str(value) if as_text else value)
        arms.append(
            sql.SQL("SELECT {}, {} FROM {} WHERE {}").format(
                sql.SQL(", ").join(groups),
                _RECORD_FIGURES if records else _ROLLUP_FIGURES,
                sql.Identifier(table),
                sql.SQL(" AND ").join(conditions),
            )
        )
        params.extend(values)

    utc_day = sql.SQL("({} AT TIME ZONE 'UTC')::date")
    if plan.kind != "records":
        daily, hourly, pending = _TABLES[plan.kind]
        if spans.days is not None:
            arm(daily, sql.SQL("bucket"), *spans.days)
        for start, end in spans.hours:
            arm(hourly, utc_day.format(sql.Identifier("bucket")), start, end)
        if spans.whole_hours is not None:
            arm(pending, utc_day.format(sql.Identifier("bucket")), *spans.whole_hours)
    for start, end in spans.raw:
        arm("usage_events", utc_day.format(sql.Identifier("occurred_at")), start, end)
    return arms, params


def _coarse_arms(
    parts: coarse_spans.SignedParts, plan: Plan, group_by: tuple[str, ...], filters: Filters
) -> tuple[list[sql.Composable], list[Any]]:
    """The SELECTs of a coarse grouping's signed parts: month and day rows by index (`bucket = ANY`, one SELECT per
    coefficient, mostly +1 and -1), pending sums joined to their days' coefficients, and records over each signed
    range."""
    assert plan.grouping is not None  # noqa: S101 - a dimension plan has its grouping
    grouping = plan.grouping.name
    arms: list[sql.Composable] = []
    params: list[Any] = []
    wanted = filters.by_member()

    def arm(
        records: bool,
        source: sql.Composable,
        within: tuple[sql.Composable, list[Any]],
        day_of: sql.Composable,
        scale: int | None,
        source_params: tuple[Any, ...] = (),
    ) -> None:
        """One SELECT from `source`, rows `within` a time condition; `scale` None: each row's `c.coef`."""
        groups = [
            sql.SQL("{} AS {}").format(
                day_of if member == "day" else plan.expression(member, records=records), sql.Identifier(f"grp{n}")
            )
            for n, member in enumerate(group_by)
        ]
        terms = _RECORD_TERMS if records else _ROLLUP_TERMS
        figures = [sql.SQL("{} AS {}").format(_scaled(terms[name], scale), sql.Identifier(name)) for name in FIGURES]
        conditions, values = [within[0]], list(within[1])
        if not records:
            conditions.append(sql.SQL("t.grouping = %s"))
            values.append(grouping)
        for member, value in wanted.items():
            conditions.append(sql.SQL("{} = %s").format(plan.expression(member, records=records)))
            values.append(str(value))
        arms.append(
            sql.SQL("SELECT {} FROM {} WHERE {}").format(
                sql.SQL(", ").join(groups + figures), source, sql.SQL(" AND ").join(conditions)
            )
        )
        params.extend([*source_params, *values])

    bucket = sql.SQL("t.bucket")
    for table, coefficients in (
        ("usage_rollup_dimension_monthly", parts.months),
        ("usage_rollup_dimension_daily", parts.days),
    ):
        for coefficient in sorted(set(coefficients.values())):
            buckets = sorted(day for day, n in coefficients.items() if n == coefficient)
            source = sql.SQL("{} AS t").format(sql.Identifier(table))
            arm(False, source, (sql.SQL("t.bucket = ANY(%s::date[])"), [buckets]), bucket, coefficient)
    pending = parts.pending_days()
    if pending:
        day = sql.SQL("(t.bucket AT TIME ZONE 'UTC')::date")
        source = sql.SQL(
            "usage_rollup_dimension_pending AS t JOIN unnest(%s::date[], %s::int[]) AS c(day, coef) ON c.day = {}"
        ).format(day)
        within = (sql.SQL("t.bucket >= %s AND t.bucket < %s"), [_midnight(min(pending)), _midnight(max(pending)) + DAY])
        arm(False, source, within, day, None, (list(pending), list(pending.values())))
    for start, end, sign in parts.records:
        within = (sql.SQL("occurred_at >= %s AND occurred_at < %s"), [start, end])
        arm(True, sql.SQL("usage_events"), within, sql.SQL("(occurred_at AT TIME ZONE 'UTC')::date"), sign)
    return arms, params


def _scaled(term: sql.Composable, scale: int | None) -> sql.Composable:
    """A figure times its part's coefficient: as it is for +1, negated for -1 (cheaper than a numeric product)."""
    if scale is None:
        return sql.SQL("{} * c.coef").format(term)
    if scale == 1:
        return term
    if scale == -1:
        return sql.SQL("-{}").format(term)
    return sql.SQL("{} * {}").format(term, sql.Literal(scale))


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _non_empty(ranges: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    return [(start, end) for start, end in ranges if start < end]
