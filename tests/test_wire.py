"""Bulk-encoded NATS commands on a real server: what arrives is what nats-py's own publish and ack would send."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError, OutboundBufferLimitError
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig
from nats.js.client import JetStreamContext

from cg_common import wire
from cg_common.publishing import Outgoing, publish_all
from cg_common.pull import PullFetcher
from cg_devstack.nats_server import start_nats
from cg_devstack.servers import Stack
from tests.support.jetstream import settled_consumer_info


async def test_commands_arrive_in_order_with_their_headers(nc: NATS) -> None:
    subject = f"wire.{secrets.token_hex(4)}"
    received: list[Msg] = []
    done = asyncio.Event()

    async def collect(message: Msg) -> None:
        received.append(message)
        if len(received) == 3:
            done.set()

    await nc.subscribe(subject, cb=collect)
    headers = wire.encode_headers({"Nats-Msg-Id": "abc", "Cg-Reason": "line one\r\nline two  "})
    await wire.send(
        nc, wire.hpubs(f"{subject}.reply", [(n, subject, headers, f"payload {n}".encode()) for n in range(3)])
    )
    await asyncio.wait_for(done.wait(), 5)
    assert [m.data for m in received] == [b"payload 0", b"payload 1", b"payload 2"]
    assert [m.reply for m in received] == [f"{subject}.reply.{n}" for n in range(3)]
    assert received[0].headers == {"Nats-Msg-Id": "abc", "Cg-Reason": "line one  line two"}


def test_what_nats_py_refuses_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(ValueError, match="header name"):
        wire.encode_headers({"Bad Name": "x"})
    with pytest.raises(ValueError, match="subject"):
        wire.hpubs("reply", [(0, "two words", wire.encode_headers({}), b"")])
    with pytest.raises(ValueError, match="subject"):
        wire.hpubs("reply\r\nPUB evil 0", [(0, "subject", wire.encode_headers({}), b"")])


@pytest.mark.parametrize("msg_id", ["cost:0f3a", " padded ", "two\r\nlines", "tab\tinside", "ünïcode"])
def test_the_msg_id_fast_path_encodes_as_the_general_encoder(msg_id: str) -> None:
    assert wire.msg_id_headers(msg_id) == wire.encode_headers({"Nats-Msg-Id": msg_id})


async def test_a_closed_connection_refuses_to_send(stack: Stack) -> None:
    client: NATS = await nats.connect(stack.nats_url)
    await client.close()
    with pytest.raises(ConnectionClosedError):
        await wire.send(client, [b"PUB x 0\r\n\r\n"])


async def test_publish_all_deduplicates_by_message_id(nc: NATS) -> None:
    js = nc.jetstream()
    name = "WIRE_" + secrets.token_hex(4).upper()
    await js.add_stream(StreamConfig(name=name, subjects=[f"{name.lower()}.>"]))
    messages = [Outgoing(f"{name.lower()}.x", f"{n}".encode(), msg_id=f"id-{n % 5}") for n in range(10)]
    acks = await publish_all(js, messages)
    assert [ack.duplicate or False for ack in acks] == [False] * 5 + [True] * 5
    assert (await js.stream_info(name)).state.messages == 5


async def test_ack_all_settles_every_message_once(nc: NATS) -> None:
    js: JetStreamContext = nc.jetstream()
    name = "WIRE_" + secrets.token_hex(4).upper()
    await js.add_stream(StreamConfig(name=name, subjects=[f"{name.lower()}.>"]))
    for n in range(50):
        await js.publish(f"{name.lower()}.x", str(n).encode())
    await js.add_consumer(name, ConsumerConfig(durable_name="w", ack_policy=AckPolicy.EXPLICIT, ack_wait=30))
    fetcher = PullFetcher(js, name, "w")
    await fetcher.start()
    batch = await fetcher.fetch(50, 5.0)
    assert len(batch) == 50
    await wire.ack_all(nc, batch)
    with pytest.raises(ValueError, match="already acknowledged"):
        await wire.ack_all(nc, batch[:1])
    info = await settled_consumer_info(js, name, "w")
    assert (info.num_pending, info.num_ack_pending, info.num_redelivered) == (0, 0, 0)
    await fetcher.stop()


async def test_while_reconnecting_a_batch_beyond_the_buffer_is_refused(tmp_path: Path) -> None:
    server = start_nats(tmp_path)
    client: NATS = await nats.connect(
        server.url, pending_size=4096, max_reconnect_attempts=-1, reconnect_time_wait=0.1, allow_reconnect=True
    )
    try:
        server.stop()
        for _ in range(100):
            if not client.is_connected:
                break
            await asyncio.sleep(0.05)
        assert not client.is_connected
        await wire.send(client, [b"PUB x 3\r\nabc\r\n"])  # small: buffered for after the reconnect, as publish does
        with pytest.raises(OutboundBufferLimitError):
            await wire.send(client, [b"PUB x 8000\r\n" + b"a" * 8000 + b"\r\n"])
    finally:
        with contextlib.suppress(ConnectionResetError):  # nats-py's close drains the dead transport
            await client.close()


async def test_publish_all_of_nothing_returns_at_once(nc: NATS) -> None:
    assert await asyncio.wait_for(publish_all(nc.jetstream(), [], ack_wait_secs=60), 10) == []
