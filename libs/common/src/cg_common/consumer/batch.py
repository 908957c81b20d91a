"""Batch mode: fetched batches settled at once, for work that is small and uniform per message (the ledger).

For each fetched batch the handler says, message by message, whether it is done, must be dead-lettered (then it is
published to the DLQ with the reason, and only then acknowledged), or should be tried again later. The handler
acknowledges nothing itself: the loop does, after the handler has returned, i.e. after the handler's effect is
durable. Acknowledgement is per message (acknowledging "everything below a sequence" would let one replica
acknowledge another's unfinished work).

Faults are told apart:
- a `TransientError` from the handler (Postgres down, NATS hiccup) pauses the loop with growing back-off and hands the
  whole batch back for redelivery; it never counts against a message;
- any other exception means some message in the batch is poison: the batch is split and retried message by message,
  and a message that keeps failing alone is dead-lettered after `max_attempts` deliveries, so it never blocks the
  stream (JetStream's own `max_deliver` is unlimited and is left so: a message must never vanish silently).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from cg_common.consumer.outcome import Outcome, TransientError, Verdict
from cg_common.consumer.spec import ConsumerSpec, ConsumerStats, dead_letter
from cg_common.logging import get_logger
from cg_common.publishing import PublishError, publish_all
from cg_common.pull import PullFetcher, deliveries

log = get_logger(__name__)

FAILURE_MEMORY = 10_000

BatchHandler = Callable[[Sequence[Msg]], Awaitable[Sequence[Outcome]]]


class BatchConsumer:
    """Runs `handler` over the durable's messages until `stop()`; finishes the batches in hand before returning."""

    def __init__(self, nc: NATS, spec: ConsumerSpec, handler: BatchHandler) -> None:
        self._nc = nc
        self._spec = spec
        self._handler = handler
        self._stopping = asyncio.Event()
        # Failures per stream sequence, counted here rather than from JetStream's delivery count, which also grows
        # with every back-off during an outage and would dead-letter good messages after one.
        self._failures: OrderedDict[int, int] = OrderedDict()
        self._transient_streak = 0
        self.stats = ConsumerStats()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        spec = self._spec
        fetcher = PullFetcher(self._nc, spec.stream, spec.durable)
        await fetcher.start()
        # Work overlaps waiting: the next batch is fetched while earlier ones are handled, and up to `max_in_flight`
        # batches are handled at once, so that one batch's parsing runs while another waits for its commit.
        slots = asyncio.Semaphore(spec.max_in_flight)
        in_flight: set[asyncio.Task[None]] = set()
        upcoming = asyncio.create_task(fetcher.fetch(spec.batch_size, spec.fetch_timeout_secs))
        try:
            while not self._stopping.is_set():
                messages = await upcoming
                upcoming = asyncio.create_task(fetcher.fetch(spec.batch_size, spec.fetch_timeout_secs))
                if not messages:
                    continue
                await slots.acquire()
                task = asyncio.create_task(self._handle(messages, slots))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
        finally:
            await asyncio.gather(*in_flight, return_exceptions=True)
            # What was fetched but not handled goes straight back, for another replica or the next start.
            for message in [*await upcoming, *await fetcher.stop()]:
                with contextlib.suppress(Exception):
                    await message.nak()

    async def _handle(self, messages: Sequence[Msg], slots: asyncio.Semaphore) -> None:
        try:
            await self._process(messages)
            self._transient_streak = 0
        except TransientError as error:
            self._transient_streak += 1
            await self._back_off(messages, error, self._transient_streak)
        except Exception:
            log.exception("batch could not be settled; JetStream will redeliver it")
        finally:
            slots.release()

    async def _process(self, messages: Sequence[Msg]) -> None:
        worn_out = [m for m in messages if deliveries(m) > self._spec.max_deliveries]
        if worn_out:
            # Delivered again and again without ever being settled: it likely kills the process. Set it aside.
            reason = f"delivered more than {self._spec.max_deliveries} times without being settled"
            await self._settle(worn_out, [Outcome.dead_letter(reason)] * len(worn_out))
            messages = [m for m in messages if deliveries(m) <= self._spec.max_deliveries]
            if not messages:
                return
        try:
            outcomes = await self._handler(messages)
        except TransientError:
            raise
        except Exception as error:
            if len(messages) == 1:
                outcomes = [self._failed_alone(messages[0], error)]
            else:
                log.warning("batch failed; retrying its messages one by one", error=type(error).__name__)
                for message in messages:
                    await self._process([message])
                return
        await self._settle(messages, outcomes)
        self.stats.batches += 1

    def _failed_alone(self, message: Msg, error: Exception) -> Outcome:
        sequence = message.metadata.sequence.stream
        failures = self._failures.pop(sequence, 0) + 1
        self._failures[sequence] = failures
        while len(self._failures) > FAILURE_MEMORY:
            self._failures.popitem(last=False)
        reason = f"handler failed {failures} times: {type(error).__name__}: {str(error)[:300]}"
        log.warning("message failed", failures=failures, error=type(error).__name__, subject=message.subject)
        if failures >= self._spec.max_attempts:
            self._failures.pop(sequence, None)
            return Outcome.dead_letter(reason)
        return Outcome.retry(reason)

    async def _settle(self, messages: Sequence[Msg], outcomes: Sequence[Outcome]) -> None:
        """Dead-letter first, then acknowledge; a message is only ever acked once its fate is durable."""
        if len(outcomes) != len(messages):
            raise RuntimeError(f"handler returned {len(outcomes)} outcomes for {len(messages)} messages")
        dead = [(m, o) for m, o in zip(messages, outcomes, strict=True) if o.verdict is Verdict.DEAD_LETTER]
        if dead:
            try:
                await publish_all(self._nc, [dead_letter(m, o.reason, spec=self._spec) for m, o in dead])
            except PublishError as error:
                raise TransientError(str(error)) from error
        settled = 0
        for message, outcome in zip(messages, outcomes, strict=True):
            if outcome.verdict is Verdict.RETRY:
                delay = outcome.delay_secs or self._spec.retry_delay(deliveries(message))
                await message.nak(delay=delay)
                self.stats.retried += 1
            else:
                await message.ack()
                settled += 1
        self.stats.dead_lettered += len(dead)
        self.stats.done += settled - len(dead)

    async def _back_off(self, messages: Sequence[Msg], error: TransientError, streak: int) -> None:
        delay = self._spec.retry_delay(streak)
        self.stats.transient_failures += 1
        log.warning("transient failure; backing off", error=str(error)[:300], delay_secs=delay, streak=streak)
        for message in messages:
            with contextlib.suppress(Exception):  # if the nak is lost, ack_wait redelivers anyway
                await message.nak(delay=delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)
