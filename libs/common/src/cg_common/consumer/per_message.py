"""Per-message mode: each message its own task, settled alone, for work whose messages take very different times
(the prober: a probe waits on OpenAI for 100 ms or for a whole timeout, and a retried one must come back after its
own delay, the upstream's `retry-after`).

At most `concurrency` messages are in hand per replica, fetched as slots free up. A message is settled once its
handler returns: its outgoing messages are published (JetStream acknowledged them) and only then is it acknowledged —
or it is handed back with its delay, or dead-lettered. A `TransientError` hands it back without counting against it;
any other exception backs it off, and dead-letters it after `max_deliveries`. On `stop()` nothing more is fetched;
messages in hand get `grace_secs` to finish, the rest are handed back for another replica.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from cg_common.consumer.outbox import Outbox
from cg_common.consumer.outcome import Outcome, TransientError, Verdict
from cg_common.consumer.spec import ConsumerSpec, ConsumerStats, dead_letter
from cg_common.logging import get_logger
from cg_common.publishing import PublishError
from cg_common.pull import PullFetcher, deliveries

log = get_logger(__name__)

FILL_WAIT_SECS = 0.02
TRANSIENT_RETRY_SECS = 2.0

MessageHandler = Callable[[Msg], Awaitable[Outcome]]


class PerMessageConsumer:
    def __init__(
        self, nc: NATS, spec: ConsumerSpec, handler: MessageHandler, *, concurrency: int, grace_secs: float
    ) -> None:
        self._nc = nc
        self._spec = spec
        self._handler = handler
        self._outbox = Outbox(nc)
        self._freed = asyncio.Event()
        self._concurrency = concurrency
        self._min_fetch = max(1, concurrency // 8)
        self._grace_secs = grace_secs
        self._stopping = asyncio.Event()
        self._in_flight: dict[asyncio.Task[None], Msg] = {}
        self.stats = ConsumerStats()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        fetcher = PullFetcher(self._nc, self._spec.stream, self._spec.durable)
        await fetcher.start()
        outbox = asyncio.create_task(self._outbox.run())
        try:
            while not self._stopping.is_set():
                free = self._concurrency - len(self._in_flight)
                if free < self._min_fetch:
                    # A fetch is a round trip to the server: ask for a handful at once, not one per finished message,
                    # unless messages finish too slowly for a handful to free up soon.
                    self._freed.clear()
                    wait = FILL_WAIT_SECS if free > 0 else self._spec.fetch_timeout_secs
                    try:
                        await asyncio.wait_for(self._freed.wait(), timeout=wait)
                        continue
                    except TimeoutError:
                        if free <= 0:
                            continue
                count = min(free, self._spec.batch_size)
                for message in await fetcher.fetch(count, self._spec.fetch_timeout_secs):
                    task = asyncio.create_task(self._settle(message))
                    self._in_flight[task] = message
                    task.add_done_callback(self._done)
        finally:
            for message in await fetcher.stop():  # delivered to this replica but never started: straight back
                await _nak(message, 0)
            await self._drain()
            outbox.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await outbox

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        self._freed.set()

    async def _drain(self) -> None:
        """Let messages in hand finish for a while; hand back what is still running."""
        if not self._in_flight:
            return
        _done, pending = await asyncio.wait(set(self._in_flight), timeout=self._grace_secs)
        for task in pending:
            message = self._in_flight.get(task)
            task.cancel()
            if message is not None:
                await _nak(message, 0)
        await asyncio.gather(*pending, return_exceptions=True)

    async def _settle(self, message: Msg) -> None:
        delivered = deliveries(message)
        try:
            outcome = await self._handler(message)
        except TransientError as error:
            log.warning("dependency failed; message handed back", error=str(error)[:200], subject=message.subject)
            await self._retry(message, TRANSIENT_RETRY_SECS)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug, not the message's fault: back it off; max_deliveries bounds how often.
            log.exception("message could not be handled; handed back", subject=message.subject)
            if delivered < self._spec.max_deliveries:
                await self._retry(message, self._spec.retry_delay(delivered))
                return
            outcome = Outcome.dead_letter(f"handler failed on all {delivered} deliveries")
        outgoing = list(outcome.outgoing)
        if outcome.verdict is Verdict.DEAD_LETTER:
            outgoing.append(dead_letter(message, outcome.reason, spec=self._spec))
        if outgoing:
            try:
                await self._outbox.publish(outgoing)
            except PublishError as error:
                log.warning("not acknowledged by JetStream; message handed back", error=str(error)[:200])
                await self._retry(message, TRANSIENT_RETRY_SECS)
                return
        if outcome.verdict is Verdict.RETRY:
            await self._retry(message, outcome.delay_secs or self._spec.retry_delay(delivered))
            return
        with contextlib.suppress(Exception):  # a lost ack means a redelivery, whose publishes JetStream de-duplicates
            await message.ack()
        if outcome.verdict is Verdict.DEAD_LETTER:
            self.stats.dead_lettered += 1
        else:
            self.stats.done += 1

    async def _retry(self, message: Msg, delay: float) -> None:
        self.stats.retried += 1
        await _nak(message, delay)


async def _nak(message: Msg, delay: float) -> None:
    with contextlib.suppress(Exception):  # if the nak is lost, ack_wait redelivers anyway
        await message.nak(delay=delay)
