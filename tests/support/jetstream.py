"""Reading a JetStream consumer's state once the server has applied the acks it was sent."""

from __future__ import annotations

import asyncio

from nats.js.api import ConsumerInfo
from nats.js.client import JetStreamContext


async def settled_consumer_info(
    js: JetStreamContext, stream: str, durable: str, *, timeout_secs: float = 5.0
) -> ConsumerInfo:
    """The consumer's info once nothing awaits an ack, or as it is after `timeout_secs`: the server applies acks on
    the consumer's own time, a moment after they arrived, so a read right after `flush` can still count some."""
    deadline = asyncio.get_running_loop().time() + timeout_secs
    while True:
        info: ConsumerInfo = await js.consumer_info(stream, durable)
        if not info.num_ack_pending or asyncio.get_running_loop().time() >= deadline:
            return info
        await asyncio.sleep(0.05)
