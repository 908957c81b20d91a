"""Alerts in: each alert on `cg.alert.>` becomes one delivery per live webhook that wants its type, in one
transaction, and is acknowledged only after that commits. A redelivered alert finds its deliveries made and adds
nothing; one that is not an alert is dead-lettered with the reason."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from nats.aio.msg import Msg
from psycopg_pool import AsyncConnectionPool

from cg_common.consumer import Outcome, TransientError
from cg_common.db import TRANSIENT_DB_ERRORS, Connection
from cg_notifier import deliveries, metrics
from cg_notifier.payloads import bodies

MAX_ID_LENGTH = 200


class AlertIntake:
    def __init__(self, db: AsyncConnectionPool[Connection], made: Callable[[], None]) -> None:
        self._db = db
        self._made = made  # wakes the dispatcher: new deliveries are due now

    async def __call__(self, message: Msg) -> Outcome:
        try:
            alert = _alert(message.data)
        except ValueError as error:
            return Outcome.dead_letter(str(error))
        try:
            async with self._db.connection() as conn, conn.transaction():
                made = await deliveries.enqueue(
                    conn, message_id=alert["id"], event_type=alert["type"], bodies=bodies(alert, message.data)
                )
        except TRANSIENT_DB_ERRORS as error:
            raise TransientError(str(error)) from error
        if made:
            metrics.MADE.inc(made)
            self._made()
        return Outcome.done()


def _alert(data: bytes) -> dict[str, Any]:
    try:
        alert = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise ValueError(f"not JSON: {error}") from None
    if not isinstance(alert, dict):
        raise ValueError("an alert is a JSON object")
    for field in ("id", "type"):
        value = alert.get(field)
        if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
            raise ValueError(f"an alert needs `{field}`, a string of 1 to {MAX_ID_LENGTH} characters")
    return alert
