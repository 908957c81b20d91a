"""`publish_all` on a real server: pipelined publishes, every ack collected, de-duplication by message id, a subject
no stream takes, an empty batch, a message too large; and that no module reaches into nats-py's private names."""

from __future__ import annotations

import ast
import asyncio
import secrets
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS
from nats.errors import MaxPayloadError
from nats.js.api import StreamConfig

from cg_common.publishing import Outgoing, PublishError, publish_all

REPO = Path(__file__).resolve().parents[1]
NAMED_TUPLE_API = {"_make", "_fields", "_replace", "_asdict"}  # public despite the underscore


async def scratch_stream(nc: NATS) -> str:
    name = "PUBLISH_" + secrets.token_hex(4).upper()
    await nc.jetstream().add_stream(StreamConfig(name=name, subjects=[f"{name.lower()}.>"]))
    return name


async def test_every_message_is_acknowledged_in_order_and_a_message_id_is_stored_once(nc: NATS) -> None:
    name = await scratch_stream(nc)
    messages = [Outgoing(f"{name.lower()}.x", f"{n}".encode(), msg_id=f"id-{n % 5}") for n in range(10)]
    acks = await publish_all(nc, messages)
    assert [ack.seq for ack in acks[:5]] == [1, 2, 3, 4, 5]
    assert [ack.duplicate or False for ack in acks] == [False] * 5 + [True] * 5
    assert (await nc.jetstream().stream_info(name)).state.messages == 5
    stored = await nc.jetstream().get_msg(name, 1)
    assert stored.headers is not None and stored.headers["Nats-Msg-Id"] == "id-0"


async def test_a_subject_no_stream_takes_fails_naming_why(nc: NATS) -> None:
    with pytest.raises(PublishError, match="no responders"):
        await publish_all(nc, [Outgoing("nowhere.at.all", b"x", msg_id="n")], ack_wait_secs=0.5, attempts=2)


async def test_nothing_to_publish_returns_at_once(nc: NATS) -> None:
    assert await asyncio.wait_for(publish_all(nc, [], ack_wait_secs=60), 10) == []


async def test_a_message_too_large_is_refused_before_anything_goes_out(nc: NATS) -> None:
    name = await scratch_stream(nc)
    too_large = b"x" * (nc.max_payload + 1)
    batch = [Outgoing(f"{name.lower()}.x", b"small", "a"), Outgoing(f"{name.lower()}.x", too_large, "b")]
    with pytest.raises(MaxPayloadError):
        await publish_all(nc, batch)
    assert (await nc.jetstream().stream_info(name)).state.messages == 0


def test_no_module_reaches_into_private_names() -> None:
    """`x._name` on anything but `self` or `cls`, in the services and libraries: nats-py (and every other dependency)
    is used through its public API only, so an upgrade cannot break it unannounced."""
    found = []
    for path in [*REPO.glob("libs/*/src/**/*.py"), *REPO.glob("services/*/src/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and node.attr not in NAMED_TUPLE_API
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                found.append(f"{path.relative_to(REPO)}:{node.lineno} {ast.unparse(node)}")
    assert found == []
