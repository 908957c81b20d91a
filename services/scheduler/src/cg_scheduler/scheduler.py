"""One scheduling step: read the active keys, publish the requests that have come due, remember what went out.

What is remembered is only an optimisation (fewer re-sends): correctness comes from the message id
`sched:<key_id>:<slot>`, which JetStream de-duplicates within its window (at least two intervals), so another
replica, or this one after a restart, sending the same request again changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import psycopg
from nats.aio.client import Client as NATS
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from cg_common.db import Connection
from cg_common.logging import get_logger
from cg_common.probes import ProbeRequest, probe_request_subject, scheduled_request_id
from cg_common.publishing import Outgoing, PublishError, publish_all
from cg_scheduler import metrics
from cg_scheduler.keys_source import active_key_ids
from cg_scheduler.plan import due_keys

log = get_logger(__name__)

PUBLISH_CHUNK = 1000  # requests per publish_all, so a start-up with many due keys still gets acks in time


class Scheduler:
    def __init__(
        self,
        db: AsyncConnectionPool[Connection],
        nc: NATS,
        *,
        interval_secs: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._nc = nc
        self._interval = interval_secs
        self._clock = clock
        self._slot: int | None = None
        self._sent: set[int] = set()
        self.working = False  # whether the last tick read the keys and had every due request acknowledged

    async def tick(self) -> bool:
        """Publish what is due now; True when the keys were read and every due request was acknowledged."""
        self.working = await self._tick()
        return self.working

    async def _tick(self) -> bool:
        now = self._clock()
        slot = int(now) // self._interval
        try:
            async with self._db.connection() as conn:
                key_ids = await active_key_ids(conn)
        except (psycopg.Error, PoolTimeout, OSError) as error:
            metrics.READ_FAILURES.inc()
            log.warning("could not read the keys; retrying", error=type(error).__name__)
            return False
        metrics.ACTIVE_KEYS.set(len(key_ids))
        # Keys due in the last moments of the slot that just ended, which no tick reached in time.
        finishing = self._slot is not None and slot == self._slot + 1
        if finishing and not await self._publish([k for k in key_ids if k not in self._sent], slot - 1, now):
            return False
        if slot != self._slot:
            self._slot, self._sent = slot, set()
            metrics.SLOT.set(slot)
        due = [k for k in due_keys(key_ids, now=now, slot=slot, interval_secs=self._interval) if k not in self._sent]
        return await self._publish(due, slot, now)

    async def _publish(self, key_ids: Sequence[int], slot: int, now: float) -> bool:
        requested_at = datetime.fromtimestamp(now, UTC)
        for start in range(0, len(key_ids), PUBLISH_CHUNK):
            chunk = key_ids[start : start + PUBLISH_CHUNK]
            messages = [_request(key_id, slot, requested_at) for key_id in chunk]
            try:
                acks = await publish_all(self._nc, messages)
            except PublishError as error:
                metrics.PUBLISH_FAILURES.inc()
                log.warning("probe requests not acknowledged; retrying", error=str(error))
                return False
            duplicates = sum(1 for ack in acks if ack.duplicate)
            metrics.DUPLICATES.inc(duplicates)
            metrics.PUBLISHED.inc(len(acks) - duplicates)
            if slot == self._slot:
                self._sent.update(chunk)
        return True


def _request(key_id: int, slot: int, requested_at: datetime) -> Outgoing:
    request = ProbeRequest(
        request_id=scheduled_request_id(key_id, slot),
        key_id=key_id,
        reason="scheduled",
        requested_at=requested_at,
        slot=slot,
    )
    return Outgoing(
        subject=probe_request_subject(key_id), payload=request.model_dump_json().encode(), msg_id=request.request_id
    )
