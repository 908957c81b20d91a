"""The per-message variant of `cg_common.consumer`'s loop, for work whose messages take very different times.

The shared loop settles a batch at once; a probe, though, waits on OpenAI for 100 ms or for a whole timeout, and a
retried one must come back after its own delay (the upstream's `retry-after`). So here each message is its own task,
at most `concurrency` at a time per replica, fetched as slots free up, and settled alone: its outgoing messages are
published (JetStream acknowledged them) and only then is it acked — or it is nak'ed with its delay, or dead-lettered.
On `stop()` no more is fetched; in-flight probes get `grace_secs` to finish, the rest are nak'ed for another replica.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.client import JetStreamContext

from cg_common.consumer import ConsumerSpec, dead_letter
from cg_common.logging import get_logger
from cg_common.publishing import PublishError
from cg_prober.handler import Action, Decision, InfrastructureError
from cg_prober.outbox import Outbox

log = get_logger(__name__)

MAX_FETCH = 256
FILL_WAIT_SECS = 0.02
INFRASTRUCTURE_RETRY_SECS = 2.0

MessageHandler = Callable[[bytes, int], Awaitable[Decision]]


class PerMessageConsumer:
    def __init__(
        self, js: JetStreamContext, spec: ConsumerSpec, handler: MessageHandler, *, concurrency: int, grace_secs: float
    ) -> None:
        self._js = js
        self._spec = spec
        self._handler = handler
        self._outbox = Outbox(js)
        self._freed = asyncio.Event()
        self._concurrency = concurrency
        self._min_fetch = max(1, concurrency // 8)
        self._grace_secs = grace_secs
        self._stopping = asyncio.Event()
        self._in_flight: dict[asyncio.Task[None], Msg] = {}

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        subscription = await self._js.pull_subscribe(
            self._spec.filter_subject,
            durable=self._spec.durable,
            stream=self._spec.stream,
            config=self._spec.consumer_config(),
        )
        outbox = asyncio.create_task(self._outbox.run())
        try:
            while not self._stopping.is_set():
                free = self._concurrency - len(self._in_flight)
                if free < self._min_fetch:
                    # A fetch is a round trip to the server: ask for a handful at once, not one per finished probe,
                    # unless probes finish too slowly for a handful to free up soon.
                    self._freed.clear()
                    wait = FILL_WAIT_SECS if free > 0 else self._spec.fetch_timeout_secs
                    try:
                        await asyncio.wait_for(self._freed.wait(), timeout=wait)
                        continue
                    except TimeoutError:
                        if free <= 0:
                            continue
                for message in await self._fetch(subscription, min(free, MAX_FETCH)):
                    task = asyncio.create_task(self._settle(message))
                    self._in_flight[task] = message
                    task.add_done_callback(self._done)
        finally:
            await self._drain()
            outbox.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await outbox
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        self._freed.set()

    async def _fetch(self, subscription: JetStreamContext.PullSubscription, count: int) -> list[Msg]:
        try:
            return await subscription.fetch(count, timeout=self._spec.fetch_timeout_secs)
        except (NatsTimeoutError, TimeoutError):
            return []

    async def _drain(self) -> None:
        """Let in-flight probes finish for a while; hand back what is still running."""
        if not self._in_flight:
            return
        _done, pending = await asyncio.wait(set(self._in_flight), timeout=self._grace_secs)
        for task in pending:
            message = self._in_flight.get(task)
            task.cancel()
            if message is not None:
                with contextlib.suppress(Exception):
                    await message.nak()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _settle(self, message: Msg) -> None:
        try:
            decision = await self._handler(message.data, message.metadata.num_delivered)
        except InfrastructureError as error:
            log.warning("dependency failed; request handed back", error=str(error)[:200])
            await _nak(message, INFRASTRUCTURE_RETRY_SECS)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug, not the key's fault and not the message's: back it off; max_deliveries bounds it.
            log.exception("probe request could not be handled; handed back")
            if message.metadata.num_delivered >= self._spec.max_deliveries:
                decision = Decision(Action.DEAD_LETTER, reason="handler kept failing")
            else:
                await _nak(message, self._spec.retry_delay(message.metadata.num_delivered))
                return
        outgoing = list(decision.outgoing)
        if decision.action is Action.DEAD_LETTER:
            outgoing.append(dead_letter(message, decision.reason, spec=self._spec))
        if outgoing:
            try:
                await self._outbox.publish(outgoing)
            except PublishError as error:
                log.warning("result not acknowledged by JetStream; request handed back", error=str(error)[:200])
                await _nak(message, INFRASTRUCTURE_RETRY_SECS)
                return
        if decision.action is Action.RETRY:
            await _nak(message, decision.delay_secs)
        else:
            with contextlib.suppress(Exception):  # a lost ack means a redelivery, which publishes nothing new
                await message.ack()


async def _nak(message: Msg, delay: float) -> None:
    with contextlib.suppress(Exception):  # if the nak is lost, ack_wait redelivers anyway
        await message.nak(delay=delay)
