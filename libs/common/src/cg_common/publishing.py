"""Publishing to JetStream that always ends: every publish has a deadline and is re-sent under the same message id.

An ack can be lost after the server stored the message (and nats-py's `publish_async` futures can stay pending forever
after a server fault). Both are made safe the same way: a bounded wait, then a re-send carrying the
same `Nats-Msg-Id`, which JetStream's duplicate window turns into a no-op if the first copy did arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import NamedTuple

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import MaxPayloadError
from nats.js.api import Header, PubAck

MSG_ID_HEADER = "Nats-Msg-Id"
NO_RESPONDERS = "503"


class PublishError(RuntimeError):
    """JetStream did not acknowledge a message in time, after every attempt."""


NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class Outgoing(NamedTuple):
    """A message to publish; a named tuple since the ledger makes one per event (a third of a frozen dataclass's
    construction cost)."""

    subject: str
    payload: bytes
    msg_id: str
    headers: Mapping[str, str] = NO_HEADERS

    def all_headers(self) -> dict[str, str]:
        return {**self.headers, MSG_ID_HEADER: self.msg_id}


async def publish(nc: NATS, message: Outgoing, *, ack_wait_secs: float = 5.0, attempts: int = 3) -> PubAck:
    """Publish one message and wait for its acknowledgement, re-sending under the same id on a timeout."""
    return (await publish_all(nc, [message], ack_wait_secs=ack_wait_secs, attempts=attempts))[0]


async def publish_all(
    nc: NATS, messages: Sequence[Outgoing], *, ack_wait_secs: float = 5.0, attempts: int = 3
) -> list[PubAck]:
    """Publish many messages to JetStream pipelined (no round trip each), then wait for every acknowledgement.

    Each message goes out as a plain NATS publish whose reply subject names its index under one inbox, and one
    subscription collects JetStream's acks: per message this costs a publish and a callback, against a future, a
    random token and a semaphore each for nats-py's `publish_async`. Messages not acknowledged in time are re-sent
    as they were. Returns the acks in order; raises PublishError once a message has gone unacknowledged `attempts`
    times.
    """
    if not messages:
        return []  # nothing will be acknowledged: waiting for it would take the whole ack_wait_secs
    if any(len(message.payload) > nc.max_payload for message in messages):
        raise MaxPayloadError  # what the server would refuse, refused before anything of the batch goes out
    inbox = nc.new_inbox()
    replies: dict[int, Msg] = {}
    awaited: set[int] = set()
    all_in = asyncio.Event()

    async def on_reply(reply: Msg) -> None:
        replies[int(reply.subject.rpartition(".")[2])] = reply
        if awaited <= replies.keys():
            all_in.set()

    acks: list[PubAck | None] = [None] * len(messages)
    waiting = list(range(len(messages)))
    last_error = "timeout"
    subscription = await nc.subscribe(f"{inbox}.*", cb=on_reply)
    try:
        for _attempt in range(attempts):
            awaited.clear()
            awaited.update(waiting)
            all_in.clear()
            try:
                for index in waiting:
                    message = messages[index]
                    await nc.publish(
                        message.subject, message.payload, reply=f"{inbox}.{index}", headers=message.all_headers()
                    )
            except NatsError as error:
                last_error = type(error).__name__
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_in.wait(), timeout=ack_wait_secs)
            still_waiting = []
            for index in waiting:
                ack, problem = _pub_ack(replies.pop(index, None))
                if ack is None:
                    last_error = problem
                    still_waiting.append(index)
                else:
                    acks[index] = ack
            waiting = still_waiting
            if not waiting:
                return [ack for ack in acks if ack is not None]
    finally:
        with contextlib.suppress(NatsError):
            await subscription.unsubscribe()
    raise PublishError(
        f"{len(waiting)} of {len(messages)} messages not acknowledged by JetStream after {attempts} attempts: "
        f"{last_error}"
    )


def _pub_ack(reply: Msg | None) -> tuple[PubAck | None, str]:
    """JetStream's answer to one publish: the ack, or why there is none."""
    if reply is None:
        return None, "timeout"
    if not reply.data and (reply.headers or {}).get(Header.STATUS.value) == NO_RESPONDERS:
        return None, "no stream takes this subject (no responders)"
    try:
        answer = orjson.loads(reply.data)
    except orjson.JSONDecodeError:
        return None, "unreadable ack"
    if "error" in answer:
        return None, f"JetStream refused it: {answer['error'].get('description', answer['error'])}"
    # Built directly: PubAck.from_response's generic field filtering costs more than the rest of a publish.
    return PubAck(
        stream=answer["stream"], seq=answer["seq"], domain=answer.get("domain"), duplicate=answer.get("duplicate")
    ), ""
