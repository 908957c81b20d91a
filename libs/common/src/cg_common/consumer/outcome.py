"""What a handler says about each message it was given."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from cg_common.publishing import Outgoing


class TransientError(Exception):
    """A fault of the infrastructure (PostgreSQL down, a NATS hiccup), not of the messages: try the same messages
    again later; it never counts against them."""


class Verdict(Enum):
    DONE = "done"  # its effect is durable: acknowledge it
    DEAD_LETTER = "dead_letter"  # it cannot be handled: to the DLQ with the reason, then acknowledge it
    RETRY = "retry"  # hand it back for redelivery, after `delay_secs` when given


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    reason: str = ""
    delay_secs: float | None = None
    # Per-message mode: published (and acknowledged by JetStream) before the message itself is acknowledged.
    outgoing: tuple[Outgoing, ...] = ()

    @classmethod
    def done(cls, outgoing: tuple[Outgoing, ...] = ()) -> Outcome:
        return cls(Verdict.DONE, outgoing=outgoing) if outgoing else _DONE

    @classmethod
    def dead_letter(cls, reason: str) -> Outcome:
        return cls(Verdict.DEAD_LETTER, reason)

    @classmethod
    def retry(cls, reason: str = "", *, delay_secs: float | None = None) -> Outcome:
        return cls(Verdict.RETRY, reason, delay_secs)


_DONE = Outcome(Verdict.DONE)
