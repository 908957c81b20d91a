"""The lean JetStream fetcher on a real server: whole batches, prompt partial ones, replicas sharing one consumer
without overlap, redelivery counts, and nothing lost when it stops."""

from __future__ import annotations

import asyncio
import secrets

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig
from nats.js.client import JetStreamContext

from cg_common.pull import PullFetcher, deliveries
from tests.support.jetstream import settled_consumer_info


async def a_stream_with(js: JetStreamContext, count: int) -> tuple[str, str]:
    """A fresh stream holding `count` messages and a durable explicit-ack consumer on it."""
    name = "PULL_" + secrets.token_hex(4).upper()
    await js.add_stream(StreamConfig(name=name, subjects=[f"{name.lower()}.>"]))
    for n in range(count):
        await js.publish(f"{name.lower()}.x", str(n).encode())
    config = ConsumerConfig(durable_name="worker", ack_policy=AckPolicy.EXPLICIT, ack_wait=30, max_ack_pending=10_000)
    await js.add_consumer(name, config)
    return name, "worker"


async def test_full_batches_then_the_rest_then_nothing(nc: NATS) -> None:
    js = nc.jetstream()
    stream, durable = await a_stream_with(js, 2_500)
    fetcher = PullFetcher(nc, stream, durable)
    await fetcher.start()
    sizes = []
    for _ in range(3):
        batch = await fetcher.fetch(1_000, 5.0)
        sizes.append(len(batch))
        for message in batch:
            await message.ack()
    assert sizes == [1_000, 1_000, 500]
    assert await fetcher.fetch(1_000, 0.3) == []
    assert await fetcher.stop() == []
    await nc.flush()
    info = await settled_consumer_info(js, stream, durable)
    assert (info.num_pending, info.num_ack_pending) == (0, 0)


async def test_a_trickle_is_handed_out_without_waiting_for_a_full_batch(nc: NATS) -> None:
    js = nc.jetstream()
    stream, durable = await a_stream_with(js, 3)
    fetcher = PullFetcher(nc, stream, durable)
    await fetcher.start()
    # The wait allowed is long; the three messages must come back well before it ends.
    batch = await asyncio.wait_for(fetcher.fetch(1_000, 30.0), timeout=10)
    assert [m.data for m in batch] == [b"0", b"1", b"2"]
    await fetcher.stop()


async def test_two_replicas_share_the_consumer_without_overlap(nc: NATS) -> None:
    js = nc.jetstream()
    stream, durable = await a_stream_with(js, 3_000)
    fetchers = [PullFetcher(nc, stream, durable) for _ in range(2)]
    for fetcher in fetchers:
        await fetcher.start()

    async def drain(fetcher: PullFetcher) -> list[int]:
        seen: list[int] = []
        while batch := await fetcher.fetch(250, 1.0):
            seen += [m.metadata.sequence.stream for m in batch]
            for message in batch:
                await message.ack()
        return seen

    first, second = await asyncio.gather(*(drain(f) for f in fetchers))
    assert first and second, "both replicas took part"
    assert sorted(first + second) == list(range(1, 3_001))


async def test_redeliveries_are_counted_and_unhandled_messages_go_back(nc: NATS) -> None:
    js = nc.jetstream()
    stream, durable = await a_stream_with(js, 20)
    fetcher = PullFetcher(nc, stream, durable)
    await fetcher.start()
    batch = await fetcher.fetch(5, 5.0)
    assert [deliveries(m) for m in batch] == [1] * 5
    for message in batch:
        await message.nak()
    # The server may already have delivered more than was handed out: stop() returns those, to be given back.
    await asyncio.sleep(0.2)
    leftovers = await fetcher.stop()
    for message in leftovers:
        await message.nak()

    again = PullFetcher(nc, stream, durable)
    await again.start()
    received: list[Msg] = []
    while len(received) < 20 and (batch := await again.fetch(20, 2.0)):
        received += batch
    assert sorted(m.metadata.sequence.stream for m in received) == list(range(1, 21))
    assert sum(deliveries(m) == 2 for m in received) >= 5
    assert all(deliveries(m) == m.metadata.num_delivered for m in received)
    await again.stop()
