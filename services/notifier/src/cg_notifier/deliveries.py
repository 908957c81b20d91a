"""The notifier's durable record of deliveries: made from alerts, claimed when due, and settled after each attempt.

A delivery exists once per (webhook, message), so an alert redelivered by JetStream adds nothing. Claiming moves a
due delivery's `next_attempt_at` forward by a lease in the same statement that takes it (`FOR UPDATE SKIP LOCKED`),
so replicas never attempt one delivery at once, and one whose notifier died mid-attempt comes back when the lease
has passed. Each live webhook gets at most its free slots per claim, looked up through its own due deliveries, so a
dead receiver's backlog never stands in front of another's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cg_common.db import Connection

ENQUEUE = """
INSERT INTO webhook_deliveries (webhook_id, message_id, event_type, body)
SELECT w.id, %(message_id)s, %(type)s, CASE w.format WHEN 'slack' THEN %(slack)s ELSE %(json)s END
FROM webhooks w
WHERE w.deleted_at IS NULL AND %(type)s = ANY(w.events)
ORDER BY w.id
ON CONFLICT (webhook_id, message_id) DO NOTHING
RETURNING id
"""

# A test delivery is attempted at once by whoever made it: it is made claimed (attempt 1, leased).
ENQUEUE_TEST = """
WITH target AS (
    SELECT id, format, url, secret_ciphertext FROM webhooks WHERE id = %(webhook_id)s AND deleted_at IS NULL
),
made AS (
    INSERT INTO webhook_deliveries (webhook_id, message_id, event_type, body, attempts, next_attempt_at)
    SELECT id, %(message_id)s, 'webhook.test', CASE format WHEN 'slack' THEN %(slack)s ELSE %(json)s END,
           1, now() + make_interval(secs => %(lease)s)
    FROM target
    RETURNING id, webhook_id, message_id, body, attempts
)
SELECT made.*, target.url, target.secret_ciphertext FROM made JOIN target ON target.id = made.webhook_id
"""

CLAIM = """
WITH room AS (
    SELECT w.id, w.url, w.secret_ciphertext, %(per_webhook)s - coalesce(u.used, 0) AS free
    FROM webhooks w
    LEFT JOIN unnest(%(busy_ids)s::bigint[], %(busy_counts)s::integer[]) AS u(webhook_id, used)
        ON u.webhook_id = w.id
    WHERE w.deleted_at IS NULL
),
picked AS (
    SELECT d.id, r.url, r.secret_ciphertext
    FROM room r
    CROSS JOIN LATERAL (
        SELECT id FROM webhook_deliveries
        WHERE webhook_id = r.id AND status = 'pending' AND next_attempt_at <= now()
        ORDER BY next_attempt_at
        LIMIT r.free
        FOR UPDATE SKIP LOCKED
    ) AS d
    WHERE r.free > 0
    LIMIT %(limit)s
)
UPDATE webhook_deliveries d
SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => %(lease)s)
FROM picked p
WHERE d.id = p.id
RETURNING d.id, d.webhook_id, d.message_id, d.body, d.attempts, p.url, p.secret_ciphertext
"""

# A deleted webhook's pending deliveries end, so that its backlog neither waits forever nor is ever sent.
CANCEL_DELETED = """
UPDATE webhook_deliveries d SET status = 'cancelled', finished_at = now()
FROM webhooks w
WHERE w.deleted_at IS NOT NULL AND d.webhook_id = w.id AND d.status = 'pending'
"""

# The attempt is logged; the delivery is settled unless another replica has claimed it since (a lease that ran out),
# except that a 2xx always counts: the receiver has it.
SETTLE = """
WITH logged AS (
    INSERT INTO webhook_attempts (delivery_id, attempt, started_at, duration_ms, response_status, error)
    VALUES (%(id)s, %(attempt)s, %(started_at)s, %(duration_ms)s, %(response_status)s, %(error)s)
    ON CONFLICT DO NOTHING
)
UPDATE webhook_deliveries
SET status = %(status)s,
    next_attempt_at = coalesce(%(next_attempt_at)s, next_attempt_at),
    finished_at = CASE WHEN %(status)s = 'pending' THEN NULL ELSE now() END
WHERE id = %(id)s AND status = 'pending' AND (attempts = %(attempt)s OR %(status)s = 'delivered')
"""


@dataclass(frozen=True)
class Claimed:
    """A delivery in hand for one attempt."""

    id: int
    webhook_id: int
    message_id: str
    body: str
    attempt: int
    url: str
    secret_ciphertext: bytes

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Claimed:
        return cls(
            id=row["id"],
            webhook_id=row["webhook_id"],
            message_id=row["message_id"],
            body=row["body"],
            attempt=row["attempts"],
            url=row["url"],
            secret_ciphertext=bytes(row["secret_ciphertext"]),
        )


@dataclass(frozen=True)
class AttemptResult:
    started_at: datetime
    duration_ms: int
    response_status: int | None
    error: str | None

    @classmethod
    def unsent(cls, error: str) -> AttemptResult:
        return cls(started_at=datetime.now(UTC), duration_ms=0, response_status=None, error=error)

    @property
    def delivered(self) -> bool:
        return self.response_status is not None and 200 <= self.response_status < 300


async def enqueue(conn: Connection, *, message_id: str, event_type: str, bodies: Mapping[str, str]) -> int:
    """One delivery per live webhook that wants `event_type`; returns how many are new."""
    cursor = await conn.execute(
        ENQUEUE,
        {
            "message_id": message_id,
            "type": event_type,
            "json": bodies["json"],
            "slack": bodies["slack"],
        },
    )
    return len(await cursor.fetchall())


async def enqueue_test(
    conn: Connection, *, webhook_id: int, message_id: str, bodies: Mapping[str, str], lease_secs: float
) -> Claimed | None:
    """A test delivery to one webhook, claimed for its first attempt; None when the webhook is gone."""
    cursor = await conn.execute(
        ENQUEUE_TEST,
        {
            "webhook_id": webhook_id,
            "message_id": message_id,
            "json": bodies["json"],
            "slack": bodies["slack"],
            "lease": lease_secs,
        },
    )
    row = await cursor.fetchone()
    return Claimed.of(row) if row else None


async def claim(
    conn: Connection, *, limit: int, per_webhook: int, busy: Mapping[int, int], lease_secs: float
) -> list[Claimed]:
    """Due deliveries, at most `limit`, and per webhook no more than its free slots (`busy`: attempts in flight)."""
    await conn.execute(CANCEL_DELETED)
    cursor = await conn.execute(
        CLAIM,
        {
            "limit": limit,
            "per_webhook": per_webhook,
            "busy_ids": list(busy),
            "busy_counts": list(busy.values()),
            "lease": lease_secs,
        },
    )
    return [Claimed.of(row) for row in await cursor.fetchall()]


async def settle(conn: Connection, delivery: Claimed, result: AttemptResult, retry_delays_secs: Sequence[float]) -> str:
    """Log the attempt and decide what follows: delivered, tried again after the schedule's next delay, or failed
    once the schedule is spent. Returns the delivery's new status."""
    next_attempt_at = None
    if result.delivered:
        status = "delivered"
    elif delivery.attempt <= len(retry_delays_secs):
        status = "pending"
        next_attempt_at = result.started_at + timedelta(seconds=retry_delays_secs[delivery.attempt - 1])
    else:
        status = "failed"
    await conn.execute(
        SETTLE,
        {
            "id": delivery.id,
            "attempt": delivery.attempt,
            "started_at": result.started_at,
            "duration_ms": result.duration_ms,
            "response_status": result.response_status,
            "error": result.error,
            "status": status,
            "next_attempt_at": next_attempt_at,
        },
    )
    return status
