"""The delivery loop: claim what is due, attempt each delivery in its own task, settle it, and repeat.

It wakes when new deliveries are made in this process, when an attempt frees a slot, and otherwise every
`POLL_SECS` (for retries coming due and deliveries made by other replicas). At most `webhook_concurrency` attempts
are in flight, and at most `webhook_per_receiver` to any one webhook, so a receiver that hangs for its whole timeout
ties up only its own slots. A fault of PostgreSQL costs a round, never a delivery: what was claimed and not settled
is claimed again once its lease has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

import httpx
from cryptography.fernet import InvalidToken
from psycopg_pool import AsyncConnectionPool

from cg_common.crypto import KeyCipher
from cg_common.db import TRANSIENT_DB_ERRORS, Connection
from cg_common.logging import get_logger
from cg_notifier import deliveries, metrics
from cg_notifier.deliveries import AttemptResult, Claimed
from cg_notifier.sending import attempt
from cg_notifier.settings import NotifierSettings

log = get_logger(__name__)

POLL_SECS = 1.0


class Dispatcher:
    def __init__(
        self,
        db: AsyncConnectionPool[Connection],
        cipher: KeyCipher,
        client: httpx.AsyncClient,
        settings: NotifierSettings,
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._client = client
        self._settings = settings
        self._busy: Counter[int] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.working = True  # the last round reached PostgreSQL

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            free = self._settings.webhook_concurrency - len(self._tasks)
            claimed = await self._claim(free) if free > 0 else []
            for delivery in claimed:
                self._start(delivery)
            if claimed and len(claimed) == free:
                continue  # there may be more due
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=POLL_SECS)
        # Attempts in hand get their timeout to finish; what is cut short comes back after its lease.
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self._settings.webhook_timeout_secs + 1)

    async def deliver(self, delivery: Claimed) -> tuple[AttemptResult, str]:
        """Attempt one claimed delivery and settle it; returns the attempt and the delivery's new status."""
        try:
            secret = self._cipher.decrypt(delivery.secret_ciphertext)
        except InvalidToken:
            result = AttemptResult.unsent("the webhook's secret does not open with MASTER_KEY; nothing was sent")
        else:
            result = await attempt(
                self._client,
                delivery,
                secret,
                allow_private=self._settings.allow_private_targets,
                timeout_secs=self._settings.webhook_timeout_secs,
            )
        async with self._db.connection() as conn:
            status = await deliveries.settle(conn, delivery, result, self._settings.webhook_retry_delays_secs)
        metrics.ATTEMPTS.labels(outcome="delivered" if result.delivered else "failed").inc()
        if status in ("delivered", "failed"):
            metrics.DELIVERIES.labels(status=status).inc()
        if status == "failed":
            log.warning("webhook delivery failed for good", delivery_id=delivery.id, webhook_id=delivery.webhook_id)
        return result, status

    async def _claim(self, free: int) -> list[Claimed]:
        try:
            async with self._db.connection() as conn:
                claimed = await deliveries.claim(
                    conn,
                    limit=free,
                    per_webhook=self._settings.webhook_per_receiver,
                    busy={webhook: count for webhook, count in self._busy.items() if count},
                    lease_secs=self._settings.lease_secs,
                )
        except TRANSIENT_DB_ERRORS as error:
            self.working = False
            log.warning("could not claim webhook deliveries; trying again", error=str(error)[:200])
            return []
        self.working = True
        return claimed

    def _start(self, delivery: Claimed) -> None:
        self._busy[delivery.webhook_id] += 1
        task = asyncio.create_task(self._attempt(delivery))
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._finished(done, delivery.webhook_id))

    def _finished(self, task: asyncio.Task[None], webhook_id: int) -> None:
        self._tasks.discard(task)
        self._busy[webhook_id] -= 1
        self._wake.set()

    async def _attempt(self, delivery: Claimed) -> None:
        try:
            await self.deliver(delivery)
        except TRANSIENT_DB_ERRORS as error:
            log.warning("attempt not settled; the delivery comes back after its lease", error=str(error)[:200])
        except Exception:
            log.exception("webhook attempt failed unexpectedly", delivery_id=delivery.id)
