"""Publishing to JetStream that always ends: every publish has a deadline and is re-sent under the same message id.

nats-py's `publish_async` futures can stay pending forever after a server fault, and a plain publish can time out
after the server stored the message. Both are made safe the same way: a bounded wait, then a re-send carrying the
same `Nats-Msg-Id`, which JetStream's duplicate window turns into a no-op if the first copy did arrive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from nats.errors import Error as NatsError
from nats.js.api import PubAck
from nats.js.client import JetStreamContext
from nats.js.errors import Error as JetStreamError

MSG_ID_HEADER = "Nats-Msg-Id"


class PublishError(RuntimeError):
    """JetStream did not acknowledge a message in time, after every attempt."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    subject: str
    payload: bytes
    msg_id: str
    headers: Mapping[str, str] = field(default_factory=dict)

    def all_headers(self) -> dict[str, str]:
        return {**self.headers, MSG_ID_HEADER: self.msg_id}


async def publish(js: JetStreamContext, message: Outgoing, *, ack_wait_secs: float = 5.0, attempts: int = 3) -> PubAck:
    """Publish one message and wait for its acknowledgement, re-sending under the same id on a timeout."""
    return (await publish_all(js, [message], ack_wait_secs=ack_wait_secs, attempts=attempts))[0]


async def publish_all(
    js: JetStreamContext, messages: Sequence[Outgoing], *, ack_wait_secs: float = 5.0, attempts: int = 3
) -> list[PubAck]:
    """Publish many messages pipelined (no round trip each), then wait for every acknowledgement.

    Returns the acks in order; raises PublishError once a message has gone unacknowledged `attempts` times.
    """
    acks: list[PubAck | None] = [None] * len(messages)
    waiting = list(range(len(messages)))
    last_error: BaseException | None = None
    for _attempt in range(attempts):
        futures = {}
        try:
            for index in waiting:
                message = messages[index]
                # No wait_stall: with one, nats-py wraps every publish in asyncio.wait_for, a task per message.
                futures[index] = await js.publish_async(message.subject, message.payload, headers=message.all_headers())
        except (NatsError, JetStreamError, TimeoutError) as error:
            last_error = error
        if futures:
            await asyncio.wait(futures.values(), timeout=ack_wait_secs)
        still_waiting = []
        for index in waiting:
            future = futures.get(index)
            if future is not None and future.done() and not future.cancelled() and future.exception() is None:
                acks[index] = future.result()
                continue
            if future is not None:
                if future.done() and not future.cancelled():
                    last_error = future.exception()
                else:
                    future.cancel()  # never leave it pending: a server fault may never resolve it
            still_waiting.append(index)
        waiting = still_waiting
        if not waiting:
            return [ack for ack in acks if ack is not None]
    raise PublishError(
        f"{len(waiting)} of {len(messages)} messages not acknowledged by JetStream after {attempts} attempts: "
        f"{type(last_error).__name__ if last_error else 'timeout'}"
    )
