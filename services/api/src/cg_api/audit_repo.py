"""The audit log (`audit_log`, the api's table): written once per change, read newest first, a page at a time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cg_common.db import Connection


@dataclass(frozen=True)
class Entry:
    credential: str  # the acting credential's name, never the credential
    method: str
    path: str
    target: str | None
    status: int


async def record(conn: Connection, entry: Entry) -> None:
    await conn.execute(
        "INSERT INTO audit_log (credential, method, path, target, status) VALUES (%s, %s, %s, %s, %s)",
        (entry.credential, entry.method, entry.path, entry.target, entry.status),
    )


async def page(conn: Connection, *, before_id: int | None, limit: int) -> list[dict[str, Any]]:
    """Up to `limit` entries older than `before_id` (all, without one), newest first."""
    cursor = await conn.execute(
        """SELECT id, at, credential, method, path, target, status FROM audit_log
           WHERE %(before)s::bigint IS NULL OR id < %(before)s ORDER BY id DESC LIMIT %(limit)s""",
        {"before": before_id, "limit": limit},
    )
    return await cursor.fetchall()
