"""Every private part of nats-py this project uses, and nothing else, in one adapter.

The ledger's hot path receives, acknowledges and publishes tens of thousands of messages a second; nats-py's public
calls cost several µs of Python each (a `Msg`, a queue, a task and a callback per received message; checks and
encoding per published one). `direct` (raw delivery to a plain function in the read loop) and `wire` (commands
encoded in bulk and handed to nats-py's own outgoing buffer) avoid that through the names below. docs/benchmarks.md
("NATS client: adapter against public calls") measures the ledger both ways in one run.

The names, all present in nats-py 2.15 and 2.16 (`libs/common/pyproject.toml` declares `nats-py>=2.15,<2.17`; the
lock pins 2.16, which the tests exercise; `_parse_header_lines` is the newest of them, added in 2.15):

- `JetStreamContext._nc`, `JetStreamContext._prefix`: a context's connection and JetStream API prefix;
- `Client._process_msg` (replaced per connection by `direct`), `Client._error_cb`: the parser's per-message call and
  the connection's error callback;
- `Client._parse_header_lines`: header parsing exactly as nats-py does it;
- `Client._send_command`, `Client._flush_queue`, `Client._flush_pending`, `Client._max_pending_size`,
  `Client._pending_data_size`: the outgoing buffer and its flusher;
- `Subscription._id`, `Subscription._conn`;
- `Msg(_client=…, _sid=…)` and `Msg._ackd`: building a message as the parser would, and its acknowledged flag.

`check()` runs when a service connects to NATS: an installed nats-py that lacks one of them stops the service at
start with one line naming what is missing, instead of failing on the first message.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable, Callable
from importlib.metadata import version

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.client import JetStreamContext

from cg_common.settings import fail

SUPPORTED = "nats-py>=2.15,<2.17"

ProcessMsg = Callable[..., Awaitable[None]]  # (sid, subject, reply, data, headers); nats-py passes None headers too


def connection(js: JetStreamContext) -> NATS:
    """The connection a JetStream context publishes and subscribes on."""
    nc: NATS = js._nc
    return nc


def api_prefix(js: JetStreamContext) -> str:
    """The JetStream API subject prefix (`$JS.API`, or a domain's)."""
    prefix: str = js._prefix
    return prefix


def process_msg(nc: NATS) -> ProcessMsg:
    """What the connection's protocol parser calls for each MSG/HMSG: nats-py's own method, or what replaced it."""
    current: ProcessMsg = nc._process_msg
    return current


def replace_process_msg(nc: NATS, replacement: ProcessMsg) -> None:
    nc._process_msg = replacement  # type: ignore[method-assign,assignment]  # the parser looks it up on the instance


async def report_error(nc: NATS, error: Exception) -> None:
    """Hand an error to the connection's error callback, as nats-py does with its own."""
    await nc._error_cb(error)


def parse_header_lines(raw: bytes) -> dict[str, str]:
    """The `Name: value` lines of a header block (after its status line), parsed as nats-py parses them."""
    parsed: dict[str, str] = NATS._parse_header_lines(raw)
    return parsed


def subscription_id(subscription: Subscription) -> int:
    sid: int = subscription._id
    return sid


def subscription_connection(subscription: Subscription) -> NATS:
    nc: NATS = subscription._conn
    return nc


def msg_fields(nc: NATS, sid: int, subject: str, reply: str, data: bytes) -> dict[str, object]:
    """The keyword arguments nats-py's parser gives `Msg`, for a subclass that builds its message itself."""
    return {"_client": nc, "subject": subject, "reply": reply, "data": data, "_sid": sid}


def acknowledged(message: Msg) -> bool:
    return message._ackd


def mark_acknowledged(message: Msg) -> None:
    message._ackd = True


def buffer_has_room(nc: NATS, size: int) -> bool:
    """Whether `size` more bytes may be queued while disconnected: what `publish` checks before it buffers."""
    return nc._max_pending_size > 0 and size + nc._pending_data_size <= nc._max_pending_size


async def enqueue(nc: NATS, commands: bytes) -> None:
    """Append encoded protocol commands to nats-py's outgoing buffer and wake its flusher, as `publish` does."""
    await nc._send_command(commands)
    if nc._flush_queue is not None and nc._flush_queue.empty():
        await nc._flush_pending()


def missing() -> list[str]:
    """The names above that the installed nats-py lacks."""
    absent = []
    for name in ("_process_msg", "_parse_header_lines", "_send_command", "_flush_pending"):
        if not callable(getattr(NATS, name, None)):
            absent.append(f"Client.{name}")
    client = NATS()
    for name in ("_error_cb", "_flush_queue", "_max_pending_size", "_pending_data_size"):
        if not hasattr(client, name):
            absent.append(f"Client.{name}")
    js = client.jetstream()
    absent += [f"JetStreamContext.{name}" for name in ("_nc", "_prefix") if not hasattr(js, name)]
    subscription = Subscription(client, 1, "cg.self-check")
    absent += [f"Subscription.{name}" for name in ("_id", "_conn") if not hasattr(subscription, name)]
    fields = {field.name for field in dataclasses.fields(Msg)}
    absent += [f"Msg.{name}" for name in ("_client", "_sid", "_ackd") if name not in fields]
    return absent


@functools.cache
def check() -> None:
    """Stop the process with one line when the installed nats-py lacks a name this adapter uses."""
    absent = missing()
    if absent:
        fail(
            f"nats-py {version('nats-py')} lacks {', '.join(absent)}, which cg_common.nats_internals relies on; "
            f"install {SUPPORTED}"
        )
