"""Direct delivery for the subscriptions on the ledger's hot path: the pull inbox and the PubAck inbox.

nats-py hands every incoming message to a subscription through header parsing, a `Msg`, an asyncio queue and a
task that awaits the callback, and the ledger receives two messages per event (the usage message and the PubAck of
its `cg.cost.recorded`). Bypassing that saved 2.5 µs of CPU per message fetched and acknowledged, and 1.2 µs per
message published (measured against a real nats-server, 200,000 messages each).

A direct subscription is an ordinary nats-py subscription (so reconnects re-subscribe it and `unsubscribe` works as
usual) whose messages are handed, as the protocol parser read them, to a plain function called in the read loop.
That function must be quick, must not block and must not raise (anything it raises is reported to the connection's
error callback and the message is dropped, as nats-py drops a message a slow consumer cannot take).

This relies on nats-py's `Client._process_msg(sid, subject, reply, data, headers)`, the method its parser calls for
each MSG/HMSG, through `cg_common.nats_internals`; `tests/test_direct.py` covers the hook.
"""

from __future__ import annotations

from typing import Protocol

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import Header

from cg_common import nats_internals

STATUS_PREFIX = b"NATS/1.0 "  # a status line: `NATS/1.0 404 No Messages`


class DirectHandler(Protocol):
    def __call__(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None, /) -> None: ...


class _Dispatch:
    """Installed once per connection in place of its `_process_msg`: direct subscriptions first, nats-py's own
    processing for every other one."""

    def __init__(self, nc: NATS, original: nats_internals.ProcessMsg) -> None:
        self.nc = nc
        self.original = original
        self.handlers: dict[int, DirectHandler] = {}

    async def __call__(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        handler = self.handlers.get(sid)
        if handler is None:
            await self.original(sid, subject, reply, data, headers)
            return
        stats = self.nc.stats
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        try:
            handler(sid, subject, reply, data, headers)
        except Exception as error:  # never let a handler end the connection's read loop
            await nats_internals.report_error(self.nc, error)


def _dispatch(nc: NATS) -> _Dispatch:
    installed = nats_internals.process_msg(nc)
    if isinstance(installed, _Dispatch):
        return installed
    dispatch = _Dispatch(nc, installed)
    nats_internals.replace_process_msg(nc, dispatch)
    return dispatch


async def subscribe(nc: NATS, subject: str, handler: DirectHandler) -> Subscription:
    """Subscribe with `handler` receiving each message's raw parts; unsubscribe with `unsubscribe`."""

    async def unused(_message: Msg) -> None:  # nats-py wants a callback; direct messages never reach it
        return None

    subscription = await nc.subscribe(subject, cb=unused)
    _dispatch(nc).handlers[nats_internals.subscription_id(subscription)] = handler
    return subscription


async def unsubscribe(subscription: Subscription) -> None:
    await subscription.unsubscribe()
    nc = nats_internals.subscription_connection(subscription)
    _dispatch(nc).handlers.pop(nats_internals.subscription_id(subscription), None)


def status(headers: bytes | None) -> str | None:
    """The status code of a status message (`404`, `408`, `503`…), None for anything else."""
    if headers is None or not headers.startswith(STATUS_PREFIX):
        return None
    return headers[len(STATUS_PREFIX) : len(STATUS_PREFIX) + 3].decode()


class DirectMsg(Msg):
    """The `Msg` nats-py would have built from a direct subscription's raw parts (`ack()`, `nak()` and `metadata`
    work on it), but its headers are parsed, as nats-py parses them, when first read (a status line gives
    `Status`; its description is left out): the ledger never reads the headers of the usage messages it receives,
    and parsing them cost a fifth of receiving one."""

    def __init__(self, nc: NATS, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        super().__init__(**nats_internals.msg_fields(nc, sid, subject.decode(), reply.decode(), data))  # type: ignore[arg-type]
        self._raw_headers = headers

    @property  # where nats-py's dataclass has a field: the same name and type
    def headers(self) -> dict[str, str] | None:
        raw = self._raw_headers
        if raw is not None:
            parsed = nats_internals.parse_header_lines(raw.partition(b"\r\n")[2])  # after `NATS/1.0[ status]`
            code = status(raw)
            if code is not None:
                parsed[Header.STATUS.value] = code
            self.headers = parsed or None
        return self._headers

    @headers.setter
    def headers(self, value: dict[str, str] | None) -> None:
        self._headers = value
        self._raw_headers = None
