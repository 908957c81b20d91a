"""The dead-letter stream seen and re-driven by an operator: `cg-ledger dlq list` and `cg-ledger dlq replay`.

Each dead letter holds the rejected message's bytes and, in headers, why and where it came from (`cg_common.consumer`
writes them). Replaying publishes the bytes again to the original subject, where its consumer judges them afresh:
after a fix of the producer or of the ledger they are recorded, else they come back here with the reason. Replaying
twice is harmless: usage is recorded once per (source, id), and a replay carries a message id of its own
(`replay:<dead-letter sequence>`), which JetStream's duplicate window drops when sent again within it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from cg_common.consumer import DLQ_REASON_HEADER, DLQ_SEQUENCE_HEADER, DLQ_SUBJECT_HEADER
from cg_common.publishing import Outgoing, publish_all
from cg_common.subjects import DLQ_STREAM

REPLAY_CHUNK = 500


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
    js: JetStreamContext, *, subject: str | None = None, sequences: Sequence[int] = ()
) -> AsyncIterator[DeadLetter]:
    """The dead letters, oldest first: those with the given sequences, or all, optionally of one `cg.dlq.<what>`."""
    try:
        info = await js.stream_info(DLQ_STREAM.name)
    except NotFoundError:
        return  # no service has created it yet: nothing was dead-lettered
    wanted = sorted(sequences) or range(info.state.first_seq, info.state.last_seq + 1)
    for sequence in wanted:
        try:
            message = await js.get_msg(DLQ_STREAM.name, sequence)
        except NotFoundError:
            continue  # deleted (replayed with --delete) or aged out
        if subject is not None and message.subject != subject:
            continue
        headers = message.headers or {}
        yield DeadLetter(
            sequence=sequence,
            subject=message.subject or "",
            dead_lettered_at=message.time,
            reason=headers.get(DLQ_REASON_HEADER, ""),
            original_subject=headers.get(DLQ_SUBJECT_HEADER, ""),
            original_sequence=headers.get(DLQ_SEQUENCE_HEADER, ""),
            payload=message.data or b"",
        )


@dataclass
class ReplayReport:
    replayed: int = 0
    deleted: int = 0
    skipped: int = 0  # no original subject to send them back to


async def replay(
    js: JetStreamContext, *, subject: str | None = None, sequences: Sequence[int] = (), delete: bool = False
) -> ReplayReport:
    """Publish dead letters again to their original subjects (acknowledged by JetStream), in chunks; with `delete`,
    each is removed from the dead-letter stream once its replay is stored."""
    report = ReplayReport()
    chunk: list[DeadLetter] = []
    async for letter in dead_letters(js, subject=subject, sequences=sequences):
        if not letter.original_subject:
            report.skipped += 1
            continue
        chunk.append(letter)
        if len(chunk) >= REPLAY_CHUNK:
            await _replay_chunk(js, chunk, delete, report)
            chunk = []
    await _replay_chunk(js, chunk, delete, report)
    return report


async def _replay_chunk(js: JetStreamContext, chunk: list[DeadLetter], delete: bool, report: ReplayReport) -> None:
    if not chunk:
        return
    await publish_all(
        js, [Outgoing(letter.original_subject, letter.payload, f"replay:{letter.sequence}") for letter in chunk]
    )
    report.replayed += len(chunk)
    if delete:
        for letter in chunk:
            await js.delete_msg(DLQ_STREAM.name, letter.sequence)
            report.deleted += 1
