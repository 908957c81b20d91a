"""All SQL the ledger writes: usage rows in batches, roll-up changes in the same statement, and their folding.

A batch is copied into a per-connection staging table (binary COPY), then moved into `usage_events` with
`ON CONFLICT (source, event_id) DO NOTHING`: whatever was recorded before, by this replica or another, at any time,
is skipped. Only the rows actually inserted add their hourly sums to `usage_rollup_pending`, in the same statement;
`fold_pending` later moves those sums into the hourly and daily roll-ups in one transaction. Summaries read roll-ups
plus pending sums, so they equal the records at every moment, while batches never wait on each other's roll-up rows.
Rows are taken in key order so that two replicas writing overlapping batches lock rows in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

import orjson
from psycopg.types.json import set_json_dumps

from cg_common.db import Connection
from cg_common.pricing import Price
from cg_common.usage_event import UsageEvent
from cg_ledger import budget_spend


class UsageRow(NamedTuple):
    """One priced usage event, ready to store; its fields are the staging table's columns, in their order, so a row
    goes to COPY as it is."""

    source: str
    event_id: str
    occurred_at: datetime
    provider: str
    model: str
    key_id: int | None
    key_fingerprint: str | None
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    requests: int
    cost: Decimal | None
    price_source: str | None
    attributes: dict[str, Any]

    @classmethod
    def from_event(
        cls, event: UsageEvent, price: Price, *, occurred_at: datetime, key_id: int | None = None
    ) -> UsageRow:
        """The row for a parsed event; `key_id` overrides the event's own (None keeps it)."""
        data = event.data
        return cls(
            event.source,
            event.id,
            occurred_at,
            data.provider,
            data.model,
            data.key_id if key_id is None else key_id,
            data.key_fingerprint,
            data.input_tokens,
            data.cached_input_tokens,
            data.output_tokens,
            data.requests,
            price.cost,
            price.source,
            data.attributes,
        )


class Stored(NamedTuple):
    """What only the database knows of a row it has just stored: its id, when, and the key it is attributed to."""

    id: int
    recorded_at: datetime
    source: str
    event_id: str
    key_id: int | None
    key_fingerprint: str | None


def _stored_rows(_cursor: object) -> Callable[[Sequence[Any]], Stored]:
    """psycopg row factory: a named tuple, not a dict, for the thousand rows every batch returns."""
    return Stored._make


STAGING_COLUMNS = (
    "source, event_id, occurred_at, provider, model, key_id, key_fingerprint, input_tokens, cached_input_tokens, "
    "output_tokens, requests, cost, price_source, attributes"
)

# The staging columns' types, for binary COPY: no text formatting in Python, no text parsing in PostgreSQL.
STAGING_TYPES = (
    "text", "text", "timestamptz", "text", "text", "int8", "text", "int8", "int8", "int8", "int8", "numeric", "text",
    "jsonb",
)  # fmt: skip

CREATE_STAGING = """
CREATE TEMP TABLE usage_staging (
    source text, event_id text, occurred_at timestamptz, provider text, model text, key_id bigint,
    key_fingerprint text, input_tokens bigint, cached_input_tokens bigint, output_tokens bigint, requests bigint,
    cost numeric, price_source text, attributes jsonb
)
"""

ROLLUP_SUMS = """count(*), sum(requests), sum(input_tokens), sum(cached_input_tokens), sum(output_tokens),
                 coalesce(sum(cost), 0), count(*) FILTER (WHERE cost IS NULL)"""
ROLLUP_COLUMNS = """bucket, key_id, source, provider, model, events, requests, input_tokens, cached_input_tokens,
                    output_tokens, cost, unpriced_events"""
PENDING_SUMS = """sum(events), sum(requests), sum(input_tokens), sum(cached_input_tokens), sum(output_tokens),
                  sum(cost), sum(unpriced_events)"""
DIMENSION_ROLLUP_COLUMNS = """grouping, bucket, value1, value2, events, requests, input_tokens, cached_input_tokens,
                              output_tokens, cost, unpriced_events"""
# A record's values for a grouping's two members (usage_member_value, migration 0011); `g` is the grouping's row.
MEMBER_VALUES = """usage_member_value(g.first_member, {row}.key_id, {row}.source, {row}.provider, {row}.model,
                                     {row}.attributes),
                  usage_member_value(g.second_member, {row}.key_id, {row}.source, {row}.provider, {row}.model,
                                     {row}.attributes)"""
ROLLUP_ADD = """events = {t}.events + EXCLUDED.events, requests = {t}.requests + EXCLUDED.requests,
                input_tokens = {t}.input_tokens + EXCLUDED.input_tokens,
                cached_input_tokens = {t}.cached_input_tokens + EXCLUDED.cached_input_tokens,
                output_tokens = {t}.output_tokens + EXCLUDED.output_tokens, cost = {t}.cost + EXCLUDED.cost,
                unpriced_events = {t}.unpriced_events + EXCLUDED.unpriced_events"""

# Key attribution happens here, against the keys as they are at this moment: an explicit key_id wins if such a key
# exists; else the fingerprint names the newest stored key with it (a deleted key's usage stays attributed to it).
# The keys a batch names are looked up once per batch, by index (`= ANY` of the batch's distinct ids and fingerprints,
# whatever the planner guesses of the staging table), and hash-joined: a LATERAL lookup per row cost PostgreSQL
# ~4 µs an event, and a plain join hashed every stored key for every batch.
RECORD_STAGED = f"""
WITH batch AS (
    SELECT array_agg(DISTINCT s.key_id) FILTER (WHERE s.key_id IS NOT NULL) AS key_ids,
           array_agg(DISTINCT s.key_fingerprint::char(16)) FILTER (WHERE s.key_fingerprint IS NOT NULL) AS fingerprints
    FROM usage_staging s
),
by_id AS (
    SELECT k.id, k.fingerprint FROM api_keys k, batch WHERE k.id = ANY(batch.key_ids)
),
newest_by_fingerprint AS (
    SELECT DISTINCT ON (k.fingerprint) k.fingerprint, k.id FROM api_keys k, batch
    WHERE k.fingerprint = ANY(batch.fingerprints)
    ORDER BY k.fingerprint, k.id DESC
),
inserted AS (
    INSERT INTO usage_events ({STAGING_COLUMNS})
    SELECT s.source, s.event_id, s.occurred_at, s.provider, s.model, coalesce(by_id.id, by_fp.id),
           coalesce(s.key_fingerprint, by_id.fingerprint), s.input_tokens, s.cached_input_tokens, s.output_tokens,
           s.requests, s.cost, s.price_source, s.attributes
    FROM usage_staging s
    LEFT JOIN by_id ON by_id.id = s.key_id
    LEFT JOIN newest_by_fingerprint by_fp
        ON by_fp.fingerprint = s.key_fingerprint::char(16) AND (s.key_id IS NULL OR by_id.id IS NULL)
    ORDER BY s.source, s.event_id
    ON CONFLICT (source, event_id) DO NOTHING
    RETURNING id, recorded_at, source, event_id, provider, model, key_id, key_fingerprint, input_tokens,
              cached_input_tokens, output_tokens, requests, cost, attributes,
              date_trunc('hour', occurred_at, 'UTC') AS hour
),
pending AS (
    INSERT INTO usage_rollup_pending ({ROLLUP_COLUMNS})
    SELECT hour, key_id, source, provider, model, {ROLLUP_SUMS}
    FROM inserted GROUP BY 1, 2, 3, 4, 5
),
-- The hour is truncated once per record, not once per record and grouping. `OFFSET 0` keeps the groupings a
-- subquery, so that the planner hashes the sums instead of sorting every (record, grouping) pair by grouping and value.
dimension_pending AS (
    INSERT INTO usage_rollup_dimension_pending ({DIMENSION_ROLLUP_COLUMNS})
    SELECT g.grouping, i.hour, {MEMBER_VALUES.format(row="i")}, {ROLLUP_SUMS}
    FROM inserted i CROSS JOIN (SELECT * FROM usage_rollup_groupings OFFSET 0) g GROUP BY 1, 2, 3, 4
)
SELECT id, recorded_at, source, event_id, key_id, key_fingerprint FROM inserted
"""  # noqa: S608 - composed from constants only

# Pending sums move into both roll-ups at once; rows appended by transactions still open stay for the next fold.
FOLD_PENDING = f"""
WITH moved AS (
    DELETE FROM usage_rollup_pending RETURNING *
),
hourly_sums AS (
    SELECT bucket, key_id, source, provider, model, {PENDING_SUMS} FROM moved GROUP BY 1, 2, 3, 4, 5
),
hourly AS (
    INSERT INTO usage_rollup_hourly ({ROLLUP_COLUMNS})
    SELECT * FROM hourly_sums ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT ON CONSTRAINT usage_rollup_hourly_group DO UPDATE SET {ROLLUP_ADD.format(t="usage_rollup_hourly")}
),
daily AS (
    INSERT INTO usage_rollup_daily ({ROLLUP_COLUMNS})
    SELECT (bucket AT TIME ZONE 'UTC')::date, key_id, source, provider, model, {PENDING_SUMS}
    FROM moved GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT ON CONSTRAINT usage_rollup_daily_group DO UPDATE SET {ROLLUP_ADD.format(t="usage_rollup_daily")}
)
SELECT count(*) AS moved FROM moved
"""  # noqa: S608 - composed from constants only
# Coarse groupings (migration 0015) have no hourly roll-up but a monthly one; the others, hourly and daily. The
# pending rows (one per batch, grouping, hour and value) are summed once per hour and value, and the days and months
# from those sums: a fold moves ~25,000 pending rows a second at full ingest, into ~5,000 sums.
FOLD_DIMENSION_PENDING = f"""
WITH moved AS (
    DELETE FROM usage_rollup_dimension_pending RETURNING *
),
hours AS (
    SELECT s.*, g.coarse FROM (
        SELECT grouping, bucket, value1, value2, {PENDING_SUMS} FROM moved GROUP BY 1, 2, 3, 4
    ) AS s({DIMENSION_ROLLUP_COLUMNS}) JOIN usage_rollup_groupings g USING (grouping)
),
days AS (
    SELECT * FROM (
        SELECT grouping, (bucket AT TIME ZONE 'UTC')::date, value1, value2, coarse, {PENDING_SUMS}
        FROM hours GROUP BY 1, 2, 3, 4, 5
    ) AS d(grouping, bucket, value1, value2, coarse, events, requests, input_tokens, cached_input_tokens,
           output_tokens, cost, unpriced_events)
),
hourly AS (
    INSERT INTO usage_rollup_dimension_hourly ({DIMENSION_ROLLUP_COLUMNS})
    SELECT grouping, bucket, value1, value2, events, requests, input_tokens, cached_input_tokens, output_tokens,
           cost, unpriced_events
    FROM hours WHERE NOT coarse ORDER BY 1, 2, 3, 4
    ON CONFLICT ON CONSTRAINT usage_rollup_dimension_hourly_group
    DO UPDATE SET {ROLLUP_ADD.format(t="usage_rollup_dimension_hourly")}
),
daily AS (
    INSERT INTO usage_rollup_dimension_daily ({DIMENSION_ROLLUP_COLUMNS})
    SELECT grouping, bucket, value1, value2, events, requests, input_tokens, cached_input_tokens, output_tokens,
           cost, unpriced_events
    FROM days ORDER BY 1, 2, 3, 4
    ON CONFLICT ON CONSTRAINT usage_rollup_dimension_daily_group
    DO UPDATE SET {ROLLUP_ADD.format(t="usage_rollup_dimension_daily")}
),
monthly AS (
    INSERT INTO usage_rollup_dimension_monthly ({DIMENSION_ROLLUP_COLUMNS})
    SELECT grouping, date_trunc('month', bucket)::date, value1, value2, {PENDING_SUMS}
    FROM days WHERE coarse GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT ON CONSTRAINT usage_rollup_dimension_monthly_group
    DO UPDATE SET {ROLLUP_ADD.format(t="usage_rollup_dimension_monthly")}
)
SELECT count(*) AS moved FROM moved
"""  # noqa: S608 - composed from constants only
# One folder at a time across replicas: a second one would only wait for the first one's row locks.
FOLD_LOCK = 0x6367_666F_6C64  # "cgfold"
FOLD_WORK_MEM = "64MB"


async def create_staging_table(conn: Connection) -> None:
    """Per-connection set-up (the pool's `configure`): the temporary table batches are copied into, and orjson for
    the attributes (several times faster than the json module)."""
    set_json_dumps(orjson.dumps, conn)
    await conn.execute(CREATE_STAGING)
    await conn.commit()


async def record_usage(conn: Connection, rows: Sequence[UsageRow]) -> list[Stored]:
    """Store what is new among `rows` and update the roll-ups; returns, for each row inserted now, what only the
    database knows: id, recorded_at, and the key it was attributed to (with source and event_id to match it up).
    Runs inside the caller's transaction: nothing is visible until the caller commits."""
    if not rows:
        return []
    async with conn.cursor().copy(f"COPY usage_staging ({STAGING_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(STAGING_TYPES)
        for row in rows:
            await copy.write_row(row)
    cursor = conn.cursor(row_factory=_stored_rows, binary=True)  # binary: no timestamp text parsing
    await cursor.execute(RECORD_STAGED)
    inserted = await cursor.fetchall()
    await conn.execute("TRUNCATE usage_staging")  # reused by the next batch on this connection
    return inserted


async def fold_pending(conn: Connection) -> int:
    """Move pending roll-up sums into the roll-ups, in the caller's transaction; returns how many pending rows
    moved, or 0 without waiting when another replica is folding right now."""
    cursor = await conn.execute("SELECT pg_try_advisory_xact_lock(%s) AS mine", (FOLD_LOCK,))
    row = await cursor.fetchone()
    if not row or not row["mine"]:
        return 0
    # A second's pending sums of a 5,000-value dimension need ~8 MB to hash; at the default 4 MB they spill to disk.
    await conn.execute(f"SET LOCAL work_mem = '{FOLD_WORK_MEM}'")
    moved = 0
    for statement in (FOLD_PENDING, FOLD_DIMENSION_PENDING):
        row = await (await conn.execute(statement)).fetchone()
        moved += int(row["moved"]) if row else 0
    return moved


async def recorded(conn: Connection, identities: Sequence[tuple[str, str]]) -> list[tuple[UsageRow, Stored]]:
    """Stored rows for these (source, event_id) pairs: what a redelivered batch recorded the first time."""
    if not identities:
        return []
    cursor = await conn.execute(
        f"""SELECT id, recorded_at, {STAGING_COLUMNS} FROM usage_events
            WHERE (source, event_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))""",  # noqa: S608
        ([s for s, _ in identities], [e for _, e in identities]),
    )
    return [
        (_usage_row(row), Stored(**{name: row[name] for name in Stored._fields})) for row in await cursor.fetchall()
    ]


@dataclass(frozen=True, slots=True)
class Repriced:
    """A stored row's new price, and what its old one was (for the roll-up correction)."""

    id: int
    occurred_at: datetime
    key_id: int | None
    source: str
    provider: str
    model: str
    old_cost: Decimal | None
    new_cost: Decimal | None
    price_source: str | None


async def rows_to_reprice(conn: Connection, *, after_id: int, limit: int, unpriced_only: bool) -> list[dict[str, Any]]:
    """The next rows by id, locked until the caller's transaction ends."""
    condition = "AND cost IS NULL" if unpriced_only else ""
    cursor = await conn.execute(
        f"""SELECT id, occurred_at, key_id, source, provider, model, input_tokens, cached_input_tokens,
                   output_tokens, requests, cost, price_source
            FROM usage_events WHERE id > %s {condition} ORDER BY id LIMIT %s FOR UPDATE""",  # noqa: S608
        (after_id, limit),
    )
    return await cursor.fetchall()


async def apply_reprices(conn: Connection, changes: Sequence[Repriced]) -> None:
    """Store new prices and move the roll-ups and the budgets' spend by the difference, in the caller's
    transaction."""
    if not changes:
        return
    await conn.execute(
        """UPDATE usage_events u SET cost = c.cost, price_source = c.price_source
           FROM unnest(%s::bigint[], %s::numeric[], %s::text[]) AS c(id, cost, price_source) WHERE u.id = c.id""",
        ([c.id for c in changes], [c.new_cost for c in changes], [c.price_source for c in changes]),
    )
    # The roll-ups move through the pending sums, like new records: the next fold applies the difference.
    await conn.execute(
        f"""INSERT INTO usage_rollup_pending ({ROLLUP_COLUMNS})
            SELECT date_trunc('hour', occurred_at, 'UTC'), key_id, source, provider, model, 0, 0, 0, 0, 0,
                   sum(cost_delta), sum(unpriced_delta)
            FROM unnest(%s::timestamptz[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::numeric[],
                        %s::bigint[]) AS c(occurred_at, key_id, source, provider, model, cost_delta, unpriced_delta)
            GROUP BY 1, 2, 3, 4, 5""",  # noqa: S608 - constant columns
        (
            [c.occurred_at for c in changes],
            [c.key_id for c in changes],
            [c.source for c in changes],
            [c.provider for c in changes],
            [c.model for c in changes],
            [(c.new_cost or Decimal(0)) - (c.old_cost or Decimal(0)) for c in changes],
            [(c.new_cost is None) - (c.old_cost is None) for c in changes],
        ),
    )
    await budget_spend.apply(
        conn, [c.id for c in changes], [(c.new_cost or Decimal(0)) - (c.old_cost or Decimal(0)) for c in changes]
    )
    await conn.execute(
        f"""INSERT INTO usage_rollup_dimension_pending ({DIMENSION_ROLLUP_COLUMNS})
            SELECT g.grouping, date_trunc('hour', u.occurred_at, 'UTC'), {MEMBER_VALUES.format(row="u")},
                   0, 0, 0, 0, 0, sum(c.cost_delta), sum(c.unpriced_delta)
            FROM unnest(%s::bigint[], %s::numeric[], %s::bigint[]) AS c(id, cost_delta, unpriced_delta)
            JOIN usage_events u ON u.id = c.id CROSS JOIN usage_rollup_groupings g
            GROUP BY 1, 2, 3, 4""",  # noqa: S608 - constant columns
        (
            [c.id for c in changes],
            [(c.new_cost or Decimal(0)) - (c.old_cost or Decimal(0)) for c in changes],
            [(c.new_cost is None) - (c.old_cost is None) for c in changes],
        ),
    )


def _usage_row(row: dict[str, Any]) -> UsageRow:
    """A stored usage row in the shape of the rows the ledger writes."""
    return UsageRow(**{name: row[name] for name in UsageRow._fields})
