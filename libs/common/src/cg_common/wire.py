"""NATS protocol commands encoded in bulk, for the paths that send tens of thousands of messages a second.

nats-py's `publish` and `Msg.ack` spend about 5 µs of Python per call on checks and on encoding one command at a time;
the ledger publishes one `cg.cost.recorded` and acknowledges one message per event. Here a whole batch is encoded
in one pass and handed to nats-py as a single buffer entry: its outgoing buffer, flusher and reconnect handling stay
in charge, so ordering and delivery are exactly those of `publish`. The subjects and header values passed in are
checked as nats-py checks them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError, ConnectionDrainingError, MaxPayloadError, OutboundBufferLimitError

from cg_common import nats_internals

_SUBJECT = re.compile(r"[^\s]+")  # no whitespace: a space or CR/LF would end the protocol line
_HEADER_KEY = re.compile(r"[!-9;-~]+")  # printable ASCII without ':', as nats-py requires
_NEWLINES = str.maketrans({"\r": " ", "\n": " "})
STATUS_LINE = b"NATS/1.0\r\n"


def encode_headers(headers: Mapping[str, str]) -> bytes:
    """The header block of an HPUB command: `NATS/1.0`, one `Key: value` line each, an empty line."""
    lines = [STATUS_LINE]
    for key, value in headers.items():
        if not _HEADER_KEY.fullmatch(key):
            raise ValueError(f"invalid NATS header name {key!r}")
        lines.append(f"{key}: {value.strip().translate(_NEWLINES)}\r\n".encode())
    lines.append(b"\r\n")
    return b"".join(lines)


def msg_id_headers(msg_id: str) -> bytes:
    """`encode_headers({"Nats-Msg-Id": msg_id})`, the one header nearly every JetStream publish carries, without the
    general encoder's per-key checks."""
    value = msg_id.encode()
    if b"\r" in value or b"\n" in value or value != value.strip():
        value = msg_id.strip().translate(_NEWLINES).encode()
    return STATUS_LINE + b"Nats-Msg-Id: " + value + b"\r\n\r\n"


def hpubs(inbox: str, messages: Iterable[tuple[int, str, bytes, bytes]]) -> list[bytes]:
    """HPUB commands for `(index, subject, headers, payload)`, each replying to `<inbox>.<index>`; `headers` as
    `encode_headers` makes them. Each distinct subject is checked once, not once a message."""
    if not _SUBJECT.fullmatch(inbox):
        raise ValueError(f"invalid reply subject: {inbox!r}")
    reply_prefix = inbox.encode()
    subjects: dict[str, bytes] = {}
    commands = []
    for index, subject, headers, payload in messages:
        encoded = subjects.get(subject)
        if encoded is None:
            if not _SUBJECT.fullmatch(subject):
                raise ValueError(f"invalid subject: {subject!r}")
            encoded = subjects[subject] = subject.encode()
        size = len(headers) + len(payload)
        commands.append(
            b"HPUB %s %s.%d %d %d\r\n%s%s\r\n" % (encoded, reply_prefix, index, len(headers), size, headers, payload)
        )
    return commands


async def send(nc: NATS, commands: Iterable[bytes]) -> None:
    """Queue encoded commands on nats-py's outgoing buffer, in order, and wake its flusher, as `publish` does."""
    if nc.is_closed:
        raise ConnectionClosedError
    if nc.is_draining_pubs:
        raise ConnectionDrainingError
    batch = b"".join(commands)
    if not batch:
        return
    if not nc.is_connected and not nats_internals.buffer_has_room(nc, len(batch)):
        raise OutboundBufferLimitError  # what publish raises while reconnecting: the buffer is off, or full
    await nats_internals.enqueue(nc, batch)  # the buffer nats-py's own publish appends to


def check_payload(nc: NATS, headers: bytes, payload: bytes) -> None:
    """What `publish` refuses: a message larger than the server accepts."""
    if len(headers) + len(payload) > nc.max_payload:
        raise MaxPayloadError


async def ack_all(nc: NATS, messages: Iterable[Msg]) -> None:
    """Acknowledge JetStream messages (`+ACK` is an empty publish to the reply subject), all in one buffer entry."""
    messages = list(messages)
    if any(nats_internals.acknowledged(message) or not message.reply for message in messages):  # Msg.ack's guard
        raise ValueError("a message was already acknowledged, or is not from JetStream")
    await send(nc, [b"PUB %s 0\r\n\r\n" % message.reply.encode() for message in messages])
    for message in messages:
        nats_internals.mark_acknowledged(message)
