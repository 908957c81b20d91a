"""Recorded usage written straight into PostgreSQL, for tests of what the api reads.

`insert_usage` keeps usage_events and both roll-ups consistent, the way the ledger does in its own transaction,
so that a summary read from the roll-ups can be checked against the raw rows.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb


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


_ROLLUP_UPSERT = """
INSERT INTO {table} AS r (bucket, key_id, source, provider, model, events, requests, input_tokens,
                          cached_input_tokens, output_tokens, cost, unpriced_events)
VALUES ({bucket}, %(key_id)s, %(source)s, %(provider)s, %(model)s, 1, %(requests)s, %(input_tokens)s,
        %(cached_input_tokens)s, %(output_tokens)s, coalesce(%(cost)s::numeric, 0), (%(cost)s::numeric IS NULL)::int)
ON CONFLICT ON CONSTRAINT {table}_group DO UPDATE SET
    events = r.events + 1,
    requests = r.requests + EXCLUDED.requests,
    input_tokens = r.input_tokens + EXCLUDED.input_tokens,
    cached_input_tokens = r.cached_input_tokens + EXCLUDED.cached_input_tokens,
    output_tokens = r.output_tokens + EXCLUDED.output_tokens,
    cost = r.cost + EXCLUDED.cost,
    unpriced_events = r.unpriced_events + EXCLUDED.unpriced_events
"""
HOURLY = _ROLLUP_UPSERT.format(table="usage_rollup_hourly", bucket="date_trunc('hour', %(occurred_at)s, 'UTC')")
DAILY = _ROLLUP_UPSERT.format(table="usage_rollup_daily", bucket="(%(occurred_at)s AT TIME ZONE 'UTC')::date")
INSERT_EVENT = """
INSERT INTO usage_events (source, event_id, occurred_at, provider, model, key_id, key_fingerprint, input_tokens,
                          cached_input_tokens, output_tokens, requests, cost, price_source, attributes)
VALUES (%(source)s, %(event_id)s, %(occurred_at)s, %(provider)s, %(model)s, %(key_id)s, %(key_fingerprint)s,
        %(input_tokens)s, %(cached_input_tokens)s, %(output_tokens)s, %(requests)s, %(cost)s, %(price_source)s,
        %(attributes)s)
RETURNING id
"""


def insert_usage(conn: psycopg.Connection[Any], rows: Iterable[UsageRow]) -> list[int]:
    """Record the rows (usage_events plus the matching roll-up rows) in one transaction; returns their ids."""
    ids = []
    with conn.transaction():
        for row in rows:
            params = {**asdict(row), "attributes": Jsonb(row.attributes)}
            inserted = conn.execute(INSERT_EVENT, params).fetchone()
            assert inserted is not None
            ids.append(int(inserted[0]))
            conn.execute(HOURLY, params)
            conn.execute(DAILY, params)
    return ids
