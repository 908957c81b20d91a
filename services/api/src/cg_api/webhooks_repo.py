"""All SQL on webhooks (the api's table) and reads of the notifier's delivery log (granted to the api)."""

from __future__ import annotations

from typing import Any

from cg_common.db import Connection

LISTED = """
SELECT w.id, w.url, w.events, w.format, w.created_at, w.created_by,
       (SELECT count(*) FROM webhook_deliveries d WHERE d.webhook_id = w.id AND d.status = 'pending') AS pending,
       last.status AS last_status, coalesce(last.finished_at, last.created_at) AS last_at
FROM webhooks w
LEFT JOIN LATERAL (
    SELECT status, finished_at, created_at FROM webhook_deliveries d
    WHERE d.webhook_id = w.id ORDER BY d.id DESC LIMIT 1
) AS last ON true
WHERE w.deleted_at IS NULL AND (%(id)s::bigint IS NULL OR w.id = %(id)s)
ORDER BY w.id
"""

DELIVERIES = """
SELECT d.id, d.message_id, d.event_type, d.status, d.attempts, d.created_at, d.finished_at,
       CASE WHEN d.status = 'pending' THEN d.next_attempt_at END AS next_attempt_at,
       coalesce((SELECT json_agg(json_build_object(
                     'attempt', a.attempt, 'started_at', a.started_at, 'duration_ms', a.duration_ms,
                     'response_status', a.response_status, 'error', a.error) ORDER BY a.attempt)
                 FROM webhook_attempts a WHERE a.delivery_id = d.id), '[]') AS log
FROM webhook_deliveries d
WHERE d.webhook_id = %(webhook)s
  AND (%(status)s::text IS NULL OR d.status = %(status)s)
  AND (%(before)s::bigint IS NULL OR d.id < %(before)s)
ORDER BY d.id DESC
LIMIT %(limit)s
"""


async def insert(
    conn: Connection, *, url: str, events: list[str], format: str, secret_ciphertext: bytes, created_by: str
) -> int:
    cursor = await conn.execute(
        """INSERT INTO webhooks (url, events, format, secret_ciphertext, created_by)
           VALUES (%s, %s, %s, %s, %s) RETURNING id""",
        (url, events, format, secret_ciphertext, created_by),
    )
    row = await cursor.fetchone()
    assert row is not None  # noqa: S101 - INSERT … RETURNING returns its row
    return int(row["id"])


async def live(conn: Connection, webhook_id: int | None = None) -> list[dict[str, Any]]:
    cursor = await conn.execute(LISTED, {"id": webhook_id})
    return await cursor.fetchall()


async def exists(conn: Connection, webhook_id: int) -> bool:
    """Made once, live or deleted: a deleted webhook's delivery log stays readable."""
    cursor = await conn.execute("SELECT 1 FROM webhooks WHERE id = %s", (webhook_id,))
    return await cursor.fetchone() is not None


async def delete(conn: Connection, webhook_id: int) -> bool:
    """Marked deleted: nothing more is delivered to it (the notifier cancels what was pending)."""
    cursor = await conn.execute(
        "UPDATE webhooks SET deleted_at = now() WHERE id = %s AND deleted_at IS NULL", (webhook_id,)
    )
    return cursor.rowcount == 1


async def deliveries(
    conn: Connection, webhook_id: int, *, status: str | None, before: int | None, limit: int
) -> list[dict[str, Any]]:
    cursor = await conn.execute(DELIVERIES, {"webhook": webhook_id, "status": status, "before": before, "limit": limit})
    return await cursor.fetchall()


async def lock_all_secrets(conn: Connection) -> list[tuple[int, bytes]]:
    """For MASTER_KEY rotation: every webhook's secret, deleted ones too."""
    cursor = await conn.execute("SELECT id, secret_ciphertext FROM webhooks ORDER BY id FOR UPDATE")
    return [(row["id"], bytes(row["secret_ciphertext"])) for row in await cursor.fetchall()]


async def replace_secret(conn: Connection, webhook_id: int, ciphertext: bytes) -> None:
    await conn.execute("UPDATE webhooks SET secret_ciphertext = %s WHERE id = %s", (ciphertext, webhook_id))
