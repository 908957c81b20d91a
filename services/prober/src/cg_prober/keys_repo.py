"""The prober's only SQL: reading stored keys, and what the ledger recorded of an organization's usage. The prober
never writes PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from cg_common.db import Connection


@dataclass(frozen=True, slots=True)
class StoredKey:
    id: int
    kind: str
    ciphertext: bytes | None  # None once the key is deleted
    fingerprint: str
    active: bool
    deleted_at: datetime | None

    @property
    def usable(self) -> bool:
        return self.ciphertext is not None and self.deleted_at is None


async def load_keys(conn: Connection, key_ids: Sequence[int]) -> dict[int, StoredKey]:
    """The stored keys among `key_ids` (unknown ids are simply absent), in one query."""
    cursor = await conn.execute(
        "SELECT id, kind, ciphertext, fingerprint, active, deleted_at FROM api_keys WHERE id = ANY(%s)",
        (list(key_ids),),
    )
    keys = {}
    for row in await cursor.fetchall():
        ciphertext = row["ciphertext"]
        keys[row["id"]] = StoredKey(
            id=row["id"],
            kind=row["kind"],
            ciphertext=bytes(ciphertext) if ciphertext is not None else None,
            fingerprint=str(row["fingerprint"]),
            active=row["active"],
            deleted_at=row["deleted_at"],
        )
    return keys


async def last_recorded_hour(conn: Connection, source: str) -> int | None:
    """The newest hour (Unix seconds) of `source`'s organization usage the ledger recorded: the organization pull's
    bookmark. Its event ids start with their hour, so the `(source, event_id)` index gives the newest at once, however
    long the source's history (`max(occurred_at)` read every row of it, on every probe)."""
    cursor = await conn.execute(
        "SELECT event_id FROM usage_events WHERE source = %s ORDER BY event_id DESC LIMIT 1", (source,)
    )
    row = await cursor.fetchone()
    hour = row["event_id"].split(":", 1)[0] if row else ""
    return int(hour) if hour.isdigit() else None


async def last_billed_day(conn: Connection, source: str) -> date | None:
    """The newest day of billed costs the ledger recorded for `source`: where the next costs pull starts."""
    cursor = await conn.execute("SELECT max(day) AS last FROM billed_costs WHERE source = %s", (source,))
    row = await cursor.fetchone()
    return row["last"] if row else None


@dataclass(frozen=True, slots=True)
class UsageFigures:
    requests: int
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int


async def recorded_usage(conn: Connection, source: str, *, since: int) -> dict[str, UsageFigures]:
    """What the ledger recorded of `source`'s organization usage from hour `since` (Unix seconds) on, summed per
    event id once each id's late additions (`<id>|…`) are folded in. Ids start with their hour in Unix seconds, so the
    `(source, event_id)` index finds them by range."""
    cursor = await conn.execute(
        """SELECT split_part(event_id, '|', 1) AS base, sum(requests) AS requests, sum(input_tokens) AS input_tokens,
                  sum(cached_input_tokens) AS cached_input_tokens, sum(output_tokens) AS output_tokens
           FROM usage_events WHERE source = %s AND event_id >= %s GROUP BY 1""",
        (source, str(since)),
    )
    return {
        row["base"]: UsageFigures(
            int(row["requests"]), int(row["input_tokens"]), int(row["cached_input_tokens"]), int(row["output_tokens"])
        )
        for row in await cursor.fetchall()
    }
