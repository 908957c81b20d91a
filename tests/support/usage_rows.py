"""Recorded usage written straight into PostgreSQL, for tests of what the api reads.

`insert_usage` runs the ledger's own SQL, so usage_events, the pending roll-up sums and (after `fold`) both roll-ups
are consistent exactly as the ledger keeps them, and a summary read from them can be checked against the raw rows.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from cg_common.dimensions import DimensionSettings, Grouping
from cg_ledger import budget_forecast, budget_spend
from cg_ledger.dimension_rollups import bring_list_to
from cg_ledger.store import CREATE_STAGING, FOLD_DIMENSION_PENDING, FOLD_PENDING, RECORD_STAGED, STAGING_COLUMNS


@dataclass(frozen=True)
class UsageRow:
    occurred_at: datetime
    source: str = "//tests/usage"
    event_id: str = field(default_factory=lambda: secrets.token_hex(8))
    provider: str = "openai"
    model: str = "gpt-4o-mini-2024-07-18"
    key_id: int | None = None
    key_fingerprint: str | None = None
    input_tokens: int = 1200
    cached_input_tokens: int = 200
    output_tokens: int = 300
    requests: int = 1
    cost: Decimal | None = Decimal("0.000345000000")
    price_source: str | None = "genai-prices test openai/gpt-4o-mini"
    attributes: dict[str, Any] = field(default_factory=dict)


def insert_usage(conn: psycopg.Connection[Any], rows: Iterable[UsageRow]) -> list[int]:
    """Record the rows with the ledger's own SQL (usage_events and pending roll-up sums, one transaction), so that what
    the api reads in these tests is exactly what the ledger writes; returns the new ids in the order of `rows`."""
    rows = list(rows)
    ids = record(conn, rows)
    return [ids[(row.source, row.event_id)] for row in rows]


def record(conn: psycopg.Connection[Any], rows: Sequence[UsageRow]) -> dict[tuple[str, str], int]:
    """Record the rows as one ledger batch, budgets' spend and alerts included; the (source, event id) of each row
    stored now, with its id (a row recorded before, or twice in `rows`, is stored once)."""
    with conn.transaction():
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS " + CREATE_STAGING.split("CREATE TEMP TABLE ", 1)[1])
        with conn.cursor().copy(f"COPY usage_staging ({STAGING_COLUMNS}) FROM STDIN") as copy:
            for row in rows:
                values = asdict(row)
                copy.write_row([*(values[c] for c in COLUMN_ORDER[:-1]), Jsonb(row.attributes)])
        inserted = conn.execute(RECORD_STAGED).fetchall()
        conn.execute("TRUNCATE usage_staging")
        costs = {(row.source, row.event_id): row.cost or Decimal(0) for row in rows}
        ids = [int(r[0]) for r in inserted]
        decided = conn.execute(
            budget_spend.APPLY, {"ids": ids, "added": [costs[(r[2], r[3])] for r in inserted]}
        ).fetchall()
        grown = [(row[1], row[2]) for row in decided if row[0] is None]
        if grown:  # as budget_spend.apply does: the current periods that grew have their forecast judged
            conn.execute(
                budget_forecast.JUDGE,
                {"budgets": [b for b, _ in grown], "definitions": [d for _, d in grown]},
            )
    return {(r[2], r[3]): int(r[0]) for r in inserted}  # RETURNING id, recorded_at, source, event_id, …


def fold(conn: psycopg.Connection[Any]) -> int:
    """Fold the pending roll-up sums (dimensions' too) into the roll-ups with the ledger's own SQL; returns how many
    moved."""
    moved = 0
    with conn.transaction():
        for statement in (FOLD_PENDING, FOLD_DIMENSION_PENDING):
            row = conn.execute(statement).fetchone()
            moved += int(row[0]) if row else 0
    return moved


DEFAULT_GROUPINGS = tuple(DimensionSettings.model_construct().groupings())  # the defaults, whatever the environment


async def roll_up(database_url: str, groupings: Sequence[Grouping] = DEFAULT_GROUPINGS) -> None:
    """Make the ledger's list of rolled-up groupings `groupings` (the default DIMENSIONS and pairs), as a ledger
    starting with those settings would."""
    async with await psycopg.AsyncConnection.connect(database_url, row_factory=dict_row) as conn:
        await bring_list_to(conn, groupings)


def rollup_totals(conn: psycopg.Connection[Any], table: str, figures: Sequence[str]) -> tuple[Any, ...]:
    """Sums over one roll-up plus the sums still pending for it: what summaries count."""
    columns = ", ".join(figures)
    sums = ", ".join(f"sum({name})" for name in figures)
    row = conn.execute(
        f"SELECT {sums} FROM (SELECT {columns} FROM {table} UNION ALL SELECT {columns} FROM usage_rollup_pending) r"  # noqa: S608
    ).fetchone()
    assert row is not None
    return tuple(row)


COLUMN_ORDER = [c.strip() for c in STAGING_COLUMNS.split(",")]
