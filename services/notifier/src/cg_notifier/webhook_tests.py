"""`POST /webhooks/{id}/test`, the notifier's side: on a request over `cg.webhook.test` (core NATS, one replica of
the queue group answers) it makes a test delivery to that webhook, attempts it at once, and replies with what the
receiver answered. The delivery is durable like any other: if this attempt fails it is retried on the schedule."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from psycopg_pool import AsyncConnectionPool

from cg_common.db import TRANSIENT_DB_ERRORS, Connection
from cg_common.logging import get_logger
from cg_common.subjects import WEBHOOK_TEST
from cg_notifier import deliveries
from cg_notifier.dispatcher import Dispatcher
from cg_notifier.payloads import bodies

log = get_logger(__name__)

QUEUE_GROUP = "notifier"


class WebhookTestResponder:
    def __init__(self, db: AsyncConnectionPool[Connection], dispatcher: Dispatcher, *, lease_secs: float) -> None:
        self._db = db
        self._dispatcher = dispatcher
        self._lease_secs = lease_secs
        self._tasks: set[asyncio.Task[None]] = set()

    async def subscribe(self, nc: NATS) -> Subscription:
        return await nc.subscribe(WEBHOOK_TEST, queue=QUEUE_GROUP, cb=self._received)

    async def _received(self, message: Msg) -> None:
        task = asyncio.create_task(self._answer(message))  # one slow receiver must not hold up the next request
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, message: Msg) -> None:
        try:
            reply = await self._test(message.data)
        except TRANSIENT_DB_ERRORS as error:
            reply = {"error": "PostgreSQL is unavailable", "unavailable": True}
            log.warning("test delivery not made", error=str(error)[:200])
        await message.respond(orjson.dumps(reply))

    async def _test(self, data: bytes) -> dict[str, Any]:
        try:
            webhook_id = int(orjson.loads(data)["webhook_id"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return {"error": 'a test request is {"webhook_id": <id>}'}
        alert = sample_alert(webhook_id)
        raw = orjson.dumps(alert)
        async with self._db.connection() as conn:
            delivery = await deliveries.enqueue_test(
                conn,
                webhook_id=webhook_id,
                message_id=alert["id"],
                bodies=bodies(alert, raw),
                lease_secs=self._lease_secs,
            )
        if delivery is None:
            return {"error": "no such webhook", "not_found": True}
        result, status = await self._dispatcher.deliver(delivery)
        return {
            "delivery_id": delivery.id,
            "webhook_id": webhook_id,
            "message_id": delivery.message_id,
            "status": status,
            "response_status": result.response_status,
            "error": result.error,
            "duration_ms": result.duration_ms,
        }


def sample_alert(webhook_id: int) -> dict[str, Any]:
    """What a test delivery carries: shaped like an alert, so a receiver's parsing is tried too."""
    now = datetime.now(UTC)
    return {
        "id": f"webhook.test:{uuid.uuid4()}",
        "type": "webhook.test",
        "webhook": {"id": webhook_id},
        "occurred_at": now.isoformat().replace("+00:00", "Z"),
    }
