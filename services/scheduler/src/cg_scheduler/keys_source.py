"""The keys to probe, read from PostgreSQL (the scheduler never writes it)."""

from __future__ import annotations

from cg_common.db import Connection


async def active_key_ids(conn: Connection) -> list[int]:
    cursor = await conn.execute("SELECT id FROM api_keys WHERE active AND deleted_at IS NULL ORDER BY id")
    return [int(row["id"]) for row in await cursor.fetchall()]
