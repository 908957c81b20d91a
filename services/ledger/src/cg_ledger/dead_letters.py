"""The dead-letter stream seen and re-driven by an operator: `cg-ledger dlq list` and `cg-ledger dlq replay`.

Each dead letter holds the rejected message's bytes and, in headers, why and where it came from (`cg_common.consumer`
writes them). Replaying publishes the bytes again to the original subject, where its consumer judges them afresh:
after a fix of the producer or of the ledger they are recorded, else they come back here with the reason. Replaying
twice is harmless: usage is recorded once per (source, id), and a replay carries a message id of its own
(`replay:<dead-letter sequence>`), which JetStream's duplicate window drops when sent again within it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from datetime import datetime

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from cg_common.consumer import DLQ_REASON_HEADER, DLQ_SEQUENCE_HEADER, DLQ_SUBJECT_HEADER
from cg_common.publishing import Outgoing, publish_all
from cg_common.pull import PullFetcher
from cg_common.subjects import DLQ, DLQ_STREAM

REPLAY_CHUNK = 500
READ_BATCH = 1_000
READ_WAIT_SECS = 2.0  # the stream said it holds these messages: silence this long means they are gone
READER_IDLE_SECS = 60.0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    sequence: int  # in the dead-letter stream
    subject: str  # cg.dlq.<what>
    dead_lettered_at: datetime | None
    reason: str
    original_subject: str
    original_sequence: str
    payload: bytes


async def dead_letters(
    nc: NATS, *, subject: str | None = None, sequences: Sequence[int] = ()
) -> AsyncGenerator[DeadLetter, None]:
    """The dead letters, oldest first: those with the given sequences, or all, optionally of one `cg.dlq.<what>`.
    All of them are read through a short-lived consumer, thousands a second; what is dead-lettered after the call
    began is left for the next one, so that replaying into a running ledger ends."""
    js = nc.jetstream()
    try:
        info = await js.stream_info(DLQ_STREAM.name)
    except NotFoundError:
        return  # no service has created it yet: nothing was dead-lettered
    if sequences:
        for sequence in sorted(sequences):
            try:
                message = await js.get_msg(DLQ_STREAM.name, sequence)
            except NotFoundError:
                continue  # deleted (replayed with --delete) or aged out
            if subject is None or message.subject == subject:
                yield _letter(sequence, message.subject, message.time, message.headers, message.data)
        return
    if not info.state.messages:
        return
    async with contextlib.aclosing(_read_all(nc, subject or f"{DLQ}.>", last=info.state.last_seq)) as everything:
        async for delivered in everything:
            metadata = delivered.metadata
            yield _letter(
                metadata.sequence.stream, delivered.subject, metadata.timestamp, delivered.headers, delivered.data
            )


async def _read_all(nc: NATS, subject: str, *, last: int) -> AsyncGenerator[Msg, None]:
    """Every message of the dead-letter stream on `subject` up to sequence `last`, through an ephemeral consumer
    that needs no acknowledgements and that JetStream removes by itself if this process dies."""
    js = nc.jetstream()
    config = ConsumerConfig(
        filter_subject=subject,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.NONE,
        inactive_threshold=READER_IDLE_SECS,
        mem_storage=True,
    )
    consumer = await js.add_consumer(DLQ_STREAM.name, config=config)
    if not consumer.num_pending:  # none on this subject: no need to wait for a fetch to come back empty
        await js.delete_consumer(DLQ_STREAM.name, consumer.name)
        return
    fetcher = PullFetcher(nc, DLQ_STREAM.name, consumer.name)
    await fetcher.start()
    try:
        while batch := await fetcher.fetch(READ_BATCH, READ_WAIT_SECS):
            for message in batch:
                if message.metadata.sequence.stream > last:
                    return
                yield message
            if batch[-1].metadata.num_pending == 0:
                return
    finally:
        await fetcher.stop()
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(DLQ_STREAM.name, consumer.name)


def _letter(
    sequence: int, subject: str | None, at: datetime | None, headers: dict[str, str] | None, payload: bytes | None
) -> DeadLetter:
    headers = headers or {}
    return DeadLetter(
        sequence=sequence,
        subject=subject or "",
        dead_lettered_at=at,
        reason=headers.get(DLQ_REASON_HEADER, ""),
        original_subject=headers.get(DLQ_SUBJECT_HEADER, ""),
        original_sequence=headers.get(DLQ_SEQUENCE_HEADER, ""),
        payload=payload or b"",
    )


@dataclass
class ReplayReport:
    replayed: int = 0
    deleted: int = 0
    skipped: int = 0  # no original subject to send them back to


async def replay(
    nc: NATS, *, subject: str | None = None, sequences: Sequence[int] = (), delete: bool = False
) -> ReplayReport:
    """Publish dead letters again to their original subjects (acknowledged by JetStream), in chunks; with `delete`,
    each is removed from the dead-letter stream once its replay is stored.

    Removing one message is a slow request for JetStream (~2 ms). When all dead letters are replayed, they are read
    oldest first, so every chunk ends a prefix of the stream (on the subject): it is purged up to its last sequence
    in one request, until a dead letter that cannot be replayed (no original subject) must stay; from there on, and
    for chosen sequences, each is deleted by itself."""
    report = ReplayReport()
    chunk: list[DeadLetter] = []
    prefix_filter = None if sequences else subject or f"{DLQ}.>"
    async for letter in dead_letters(nc, subject=subject, sequences=sequences):
        if not letter.original_subject:
            report.skipped += 1
            await _replay_chunk(nc, chunk, report, delete=delete, prefix_filter=prefix_filter)
            chunk, prefix_filter = [], None  # it stays, so what follows is no longer a prefix
            continue
        chunk.append(letter)
        if len(chunk) >= REPLAY_CHUNK:
            await _replay_chunk(nc, chunk, report, delete=delete, prefix_filter=prefix_filter)
            chunk = []
    await _replay_chunk(nc, chunk, report, delete=delete, prefix_filter=prefix_filter)
    return report


async def _replay_chunk(
    nc: NATS, chunk: list[DeadLetter], report: ReplayReport, *, delete: bool, prefix_filter: str | None
) -> None:
    js = nc.jetstream()
    if not chunk:
        return
    await publish_all(
        nc, [Outgoing(letter.original_subject, letter.payload, f"replay:{letter.sequence}") for letter in chunk]
    )
    report.replayed += len(chunk)
    if not delete:
        return
    if prefix_filter is not None:
        await js.purge_stream(DLQ_STREAM.name, seq=chunk[-1].sequence + 1, subject=prefix_filter)
    else:
        await asyncio.gather(*(js.delete_msg(DLQ_STREAM.name, letter.sequence) for letter in chunk))
    report.deleted += len(chunk)
