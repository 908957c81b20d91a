"""How a consumer loop runs (which durable, where dead letters go, batch and retry tuning), what it counts, and
the dead letters it writes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from nats.aio.msg import Msg
from prometheus_client.core import CounterMetricFamily

from cg_common.publishing import Outgoing
from cg_common.topology import DurableConsumer

DLQ_REASON_HEADER = "Cg-Dlq-Reason"
DLQ_SUBJECT_HEADER = "Cg-Original-Subject"
DLQ_SEQUENCE_HEADER = "Cg-Original-Sequence"


@dataclass(frozen=True)
class ConsumerSpec:
    consumer: DurableConsumer  # provisioned by the migration step (cg_common.topology); the loop only uses it
    dlq_subject: str
    batch_size: int = 500  # batch mode: messages per fetch; per-message mode: the most fetched at once
    fetch_timeout_secs: float = 1.0
    max_in_flight: int = 2  # batch mode: batches handled at once by one replica
    max_attempts: int = 5  # batch mode: failures of one message, handled alone, before it is dead-lettered
    # Deliveries after which a message is dead-lettered whatever else is known: a message that kills the process
    # before any failure can be counted must still stop coming back. Transient back-offs count here too, hence high.
    max_deliveries: int = 100
    retry_delays_secs: tuple[float, ...] = (0.5, 1, 2, 5, 10, 30)

    @property
    def stream(self) -> str:
        return self.consumer.stream

    @property
    def durable(self) -> str:
        return self.consumer.durable

    def retry_delay(self, attempt: int) -> float:
        return self.retry_delays_secs[min(max(attempt, 1), len(self.retry_delays_secs)) - 1]


@dataclass
class ConsumerStats:
    """What the loop has done, for health and metrics."""

    batches: int = 0
    done: int = 0
    dead_lettered: int = 0
    retried: int = 0
    transient_failures: int = 0


class ConsumerStatsCollector:
    """Exposes a consumer's stats as Prometheus counters (`<prefix>_dead_lettered_total`, …)."""

    def __init__(self, prefix: str, stats: ConsumerStats) -> None:
        self._prefix = prefix
        self._stats = stats

    def collect(self) -> Iterator[CounterMetricFamily]:
        descriptions = {
            "batches": "Batches settled.",
            "done": "Messages handled and acknowledged.",
            "dead_lettered": "Messages sent to the DLQ with a reason, then acknowledged.",
            "retried": "Messages handed back for a later retry.",
            "transient_failures": "Batches handed back because a dependency (Postgres, NATS) failed.",
        }
        for name, description in descriptions.items():
            yield CounterMetricFamily(f"{self._prefix}_{name}", description, value=getattr(self._stats, name))


def dead_letter(message: Msg, reason: str, *, spec: ConsumerSpec) -> Outgoing:
    """The DLQ copy of a message: its payload, the reason and where it came from in headers."""
    sequence = message.metadata.sequence.stream
    return Outgoing(
        subject=spec.dlq_subject,
        payload=message.data,
        # The same message dead-lettered twice (a crash before its ack) is stored once.
        msg_id=f"dlq:{spec.stream}:{sequence}",
        headers={
            DLQ_REASON_HEADER: reason.replace("\r", " ").replace("\n", " "),
            DLQ_SUBJECT_HEADER: message.subject,
            DLQ_SEQUENCE_HEADER: str(sequence),
        },
    )
