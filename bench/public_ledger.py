"""`python -m bench.public_ledger run`: `cg-ledger run` with public nats-py calls only on its hot path, the baseline
`bench/ingest.py` measures the adapter (`cg_common.nats_internals`: direct subscriptions, bulk-encoded commands)
against, in the same run.

Swapped in before the ledger starts, each doing through nats-py's public API what the adapter does through its
private parts:
- fetching: the same pull requests (`$JS.API.CONSUMER.MSG.NEXT`), answered on a plain subscription with a callback;
- acknowledging: `Msg.ack()` per message;
- publishing `cg.cost.recorded`: `nc.publish` per message, pipelined, each replying to `<inbox>.<index>`, the acks
  collected by one plain subscription.
The connection is the one the service itself opens, captured as it connects (a JetStream context has no public way
to name its connection).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable, Sequence

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import PubAck
from nats.js.client import JetStreamContext

import cg_common.consumer.batch
import cg_common.messaging
import cg_common.wire
import cg_ledger.recorder
import cg_ledger.service
from cg_common.publishing import Outgoing, PublishError
from cg_ledger import cli

API_PREFIX = "$JS.API"  # no JetStream domain in the benchmark
REQUEST_ENDED = frozenset({"404", "408"})
LINGER_SECS = 0.002
EXPIRY_MARGIN_SECS = 0.05
connections: list[NATS] = []


class PublicPullFetcher:
    """`cg_common.pull.PullFetcher`'s behaviour on a plain nats-py subscription."""

    def __init__(self, _js: JetStreamContext, stream: str, durable: str) -> None:
        self._nc = connections[0]
        self._next_subject = f"{API_PREFIX}.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = self._nc.new_inbox()
        self._buffer: deque[Msg] = deque()
        self._arrived = asyncio.Event()
        self._subscription: Subscription | None = None
        self._requested = 0
        self._request_expires_at = 0.0

    async def start(self) -> None:
        self._subscription = await self._nc.subscribe(self._inbox, cb=self._on_message)

    async def stop(self) -> list[Msg]:
        if self._subscription is not None:
            await self._subscription.unsubscribe()
        left = list(self._buffer)
        self._buffer.clear()
        return left

    async def fetch(self, batch: int, wait_secs: float) -> list[Msg]:
        deadline = time.monotonic() + wait_secs
        while True:
            if len(self._buffer) >= batch:
                return self._take(batch)
            now = time.monotonic()
            if self._requested <= 0 or now >= self._request_expires_at:
                await self._request(batch - len(self._buffer), max(wait_secs, 0.1))
            remaining = deadline - now
            if remaining <= 0:
                return self._take(batch)
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), min(remaining, LINGER_SECS) if self._buffer else remaining)
            except TimeoutError:
                if self._buffer:
                    return self._take(batch)

    def _take(self, batch: int) -> list[Msg]:
        return [self._buffer.popleft() for _ in range(min(batch, len(self._buffer)))]

    async def _request(self, batch: int, expires_secs: float) -> None:
        self._requested = batch
        self._request_expires_at = time.monotonic() + expires_secs
        request = {"batch": batch, "expires": int((expires_secs - EXPIRY_MARGIN_SECS) * 1e9)}
        await self._nc.publish(self._next_subject, orjson.dumps(request), reply=self._inbox)

    async def _on_message(self, message: Msg) -> None:
        status = (message.headers or {}).get("Status") if not message.data else None
        if status is not None:
            if status != "100":
                self._requested = 0
                self._arrived.set()
            return
        self._requested -= 1
        self._buffer.append(message)
        self._arrived.set()


async def public_ack_all(nc: NATS, messages: Iterable[Msg]) -> None:
    for message in messages:
        await message.ack()


async def public_publish_all(
    js: JetStreamContext, messages: Sequence[Outgoing], *, ack_wait_secs: float = 5.0, attempts: int = 3
) -> list[PubAck]:
    if not messages:
        return []
    nc = connections[0]
    inbox = nc.new_inbox()
    replies: dict[int, bytes] = {}
    all_in = asyncio.Event()

    async def on_reply(reply: Msg) -> None:
        replies[int(reply.subject.rpartition(".")[2])] = reply.data
        if len(replies) == len(messages):
            all_in.set()

    subscription = await nc.subscribe(f"{inbox}.*", cb=on_reply)
    try:
        for index, message in enumerate(messages):
            await nc.publish(message.subject, message.payload, reply=f"{inbox}.{index}", headers=message.all_headers())
        await asyncio.wait_for(all_in.wait(), timeout=ack_wait_secs * attempts)
    except TimeoutError:
        raise PublishError(f"{len(messages) - len(replies)} of {len(messages)} not acknowledged") from None
    finally:
        await subscription.unsubscribe()
    acks = []
    for index in range(len(messages)):
        answer = orjson.loads(replies[index])
        acks.append(PubAck(stream=answer["stream"], seq=answer["seq"], duplicate=answer.get("duplicate")))
    return acks


async def capturing_connect(url: str, *, name: str, connect_timeout: int = 5) -> NATS:
    nc = await cg_common.messaging.connect_nats(url, name=name, connect_timeout=connect_timeout)
    connections.append(nc)
    return nc


def main() -> None:
    cg_ledger.service.connect_nats = capturing_connect  # type: ignore[attr-defined]
    cg_common.consumer.batch.PullFetcher = PublicPullFetcher  # type: ignore[attr-defined,assignment]
    cg_common.wire.ack_all = public_ack_all
    cg_ledger.recorder.publish_all = public_publish_all  # type: ignore[attr-defined]
    cli.main()


if __name__ == "__main__":
    main()
