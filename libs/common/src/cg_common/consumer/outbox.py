"""Shared publishing for messages settled concurrently: whatever results are ready at the same moment go out in one
`publish_all` (one inbox subscription, one wait for JetStream's acks) instead of one round of set-up each.

Each caller still waits until JetStream has acknowledged its own messages (or gets the PublishError), so a message is
acknowledged only after its result is durable, exactly as with a direct `publish_all`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from nats.aio.client import Client as NATS

from cg_common.publishing import Outgoing, PublishError, publish_all

MAX_BATCH = 256
FLUSHES_IN_FLIGHT = 4


class Outbox:
    def __init__(self, nc: NATS) -> None:
        self._nc = nc
        self._pending: list[tuple[Sequence[Outgoing], asyncio.Future[None]]] = []
        self._wakeup = asyncio.Event()
        self._flushes = asyncio.Semaphore(FLUSHES_IN_FLIGHT)
        self._tasks: set[asyncio.Task[None]] = set()

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        """Return once JetStream acknowledged every message; raise PublishError if it did not in time."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((messages, done))
        self._wakeup.set()
        await done

    async def run(self) -> None:
        """Flush until cancelled; batches form while earlier flushes wait for their acks."""
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._pending:
                    await self._flushes.acquire()
                    batch = self._take()
                    task = asyncio.create_task(self._flush(batch))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        finally:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _take(self) -> list[tuple[Sequence[Outgoing], asyncio.Future[None]]]:
        batch: list[tuple[Sequence[Outgoing], asyncio.Future[None]]] = []
        count = 0
        while self._pending and (not batch or count + len(self._pending[0][0]) <= MAX_BATCH):
            entry = self._pending.pop(0)
            batch.append(entry)
            count += len(entry[0])
        return batch

    async def _flush(self, batch: list[tuple[Sequence[Outgoing], asyncio.Future[None]]]) -> None:
        try:
            await publish_all(self._nc, [message for messages, _ in batch for message in messages])
        except PublishError as error:
            for _, done in batch:
                if not done.done():
                    done.set_exception(PublishError(str(error)))
        else:
            for _, done in batch:
                if not done.done():
                    done.set_result(None)
        finally:
            self._flushes.release()
