"""Direct subscriptions on a real nats-server: raw messages to a plain function, every other subscription untouched."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import StreamConfig

from cg_common import direct, wire
from cg_devstack.nats_server import start_nats
from cg_devstack.servers import Stack

Raw = tuple[int, bytes, bytes, bytes, bytes | None]


class Collector:
    """A direct handler that keeps what it is given and says when `expected` messages are in."""

    def __init__(self, expected: int) -> None:
        self.received: list[Raw] = []
        self.expected = expected
        self.all_in = asyncio.Event()

    def __call__(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        self.received.append((sid, subject, reply, data, headers))
        if len(self.received) >= self.expected:
            self.all_in.set()

    async def wait(self) -> None:
        await asyncio.wait_for(self.all_in.wait(), 5)


async def test_raw_parts_reach_the_handler_and_other_subscriptions_are_untouched(nc: NATS) -> None:
    subject = f"direct.{secrets.token_hex(4)}"
    collector = Collector(expected=2)
    subscription = await direct.subscribe(nc, f"{subject}.*", collector)
    ordinary: asyncio.Queue[Msg] = asyncio.Queue()

    async def keep(message: Msg) -> None:
        await ordinary.put(message)

    await nc.subscribe(f"{subject}.*", cb=keep)  # the same subject through nats-py's own path
    headers = wire.encode_headers({"Nats-Msg-Id": "abc", "Team": "ml"})
    await wire.send(
        nc,
        [*wire.hpubs("the.reply", [(7, f"{subject}.a", headers, b"one")]), b"PUB %s.b 3\r\ntwo\r\n" % subject.encode()],
    )
    await collector.wait()
    with_headers, plain = collector.received
    assert with_headers[1:4] == (f"{subject}.a".encode(), b"the.reply.7", b"one")
    assert direct.DirectMsg(nc, *with_headers).headers == {"Nats-Msg-Id": "abc", "Team": "ml"}
    assert plain[1:] == (f"{subject}.b".encode(), b"", b"two", None)
    assert with_headers[0] == subscription._id
    built = [direct.DirectMsg(nc, *raw) for raw in collector.received]
    nats_py = [await asyncio.wait_for(ordinary.get(), 5) for _ in range(2)]
    assert [(m.subject, m.reply, m.data, m.headers) for m in built] == [
        (m.subject, m.reply, m.data, m.headers) for m in nats_py
    ]
    assert nc.stats["in_msgs"] >= 4


async def test_status_messages_are_told_apart(nc: NATS) -> None:
    collector = Collector(expected=1)
    inbox = nc.new_inbox()
    await direct.subscribe(nc, inbox, collector)
    await nc.publish(f"nobody.listens.{secrets.token_hex(4)}", b"", reply=inbox)  # the server answers 503
    await collector.wait()
    _sid, _subject, _reply, data, headers = collector.received[0]
    assert (data, direct.status(headers)) == (b"", "503")
    built = direct.DirectMsg(nc, *collector.received[0]).headers or {}
    assert built["Status"] == "503"
    assert direct.status(b"NATS/1.0\r\nStatus-Like: 404\r\n\r\n") is None
    assert direct.status(None) is None


async def test_a_failing_handler_is_reported_and_the_connection_reads_on(stack: Stack) -> None:
    errors: list[Exception] = []

    async def on_error(error: Exception) -> None:
        errors.append(error)

    client: NATS = await nats.connect(stack.nats_url, error_cb=on_error)
    try:
        subject = f"direct.{secrets.token_hex(4)}"
        collector = Collector(expected=1)

        def explode(sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
            raise RuntimeError("handler bug")

        await direct.subscribe(client, f"{subject}.bad", explode)
        await direct.subscribe(client, f"{subject}.good", collector)
        await client.publish(f"{subject}.bad", b"x")
        await client.publish(f"{subject}.good", b"y")
        await collector.wait()
        assert [str(error) for error in errors] == ["handler bug"]
        assert client.is_connected
    finally:
        await client.close()


async def test_after_unsubscribe_nothing_more_arrives(nc: NATS) -> None:
    subject = f"direct.{secrets.token_hex(4)}"
    collector = Collector(expected=1)
    subscription = await direct.subscribe(nc, subject, collector)
    await nc.publish(subject, b"before")
    await collector.wait()
    await direct.unsubscribe(subscription)
    await nc.publish(subject, b"after")
    await nc.flush()
    await asyncio.sleep(0.1)
    assert [raw[3] for raw in collector.received] == [b"before"]


async def test_a_direct_subscription_survives_a_server_restart(tmp_path: Path) -> None:
    server = start_nats(tmp_path / "first")
    port = int(server.url.rpartition(":")[2])
    reconnected = asyncio.Event()

    async def on_reconnect() -> None:
        reconnected.set()

    client: NATS = await nats.connect(
        server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1, reconnected_cb=on_reconnect
    )
    try:
        subject = f"direct.{secrets.token_hex(4)}"
        collector = Collector(expected=1)
        await direct.subscribe(client, subject, collector)
        server.stop()
        server = start_nats(tmp_path / "second", port=port)
        await asyncio.wait_for(reconnected.wait(), 10)
        await client.publish(subject, b"after the restart")
        await collector.wait()
        assert collector.received[0][3] == b"after the restart"
    finally:
        with contextlib.suppress(ConnectionResetError):
            await client.close()
        server.stop()


async def test_publish_all_acks_come_through_a_direct_subscription(nc: NATS) -> None:
    """The PubAck inbox is direct: a stream's acks and a subject no stream takes are both read right."""
    from cg_common.publishing import Outgoing, PublishError, publish_all

    js = nc.jetstream()
    name = "DIRECT_" + secrets.token_hex(4).upper()
    await js.add_stream(StreamConfig(name=name, subjects=[f"{name.lower()}.>"]))
    acks = await publish_all(js, [Outgoing(f"{name.lower()}.x", b"%d" % n, msg_id=f"m{n}") for n in range(20)])
    assert [ack.seq for ack in acks] == list(range(1, 21))
    with pytest.raises(PublishError, match="no responders"):
        await publish_all(js, [Outgoing(f"nowhere.{name.lower()}", b"x", msg_id="n")], ack_wait_secs=0.5, attempts=1)
