"""The one way every service consumes JetStream: a durable pull consumer shared by all replicas, explicit
per-message acknowledgement, an acknowledgement only once a message's effect is durable, and a dead letter with the
reason for what cannot be handled. Two modes share it:

- `BatchConsumer` settles fetched batches at once: for the ledger, whose work per message is small and uniform;
- `PerMessageConsumer` settles each message alone, as its own task: for the prober, whose messages each wait on a
  remote call for anything from 100 ms to a whole timeout, and are retried after delays of their own.
"""

from cg_common.consumer.batch import BatchConsumer
from cg_common.consumer.outcome import Outcome, TransientError, Verdict
from cg_common.consumer.per_message import PerMessageConsumer
from cg_common.consumer.spec import (
    DLQ_REASON_HEADER,
    DLQ_SEQUENCE_HEADER,
    DLQ_SUBJECT_HEADER,
    ConsumerSpec,
    ConsumerStats,
    ConsumerStatsCollector,
    dead_letter,
)

__all__ = [
    "DLQ_REASON_HEADER",
    "DLQ_SEQUENCE_HEADER",
    "DLQ_SUBJECT_HEADER",
    "BatchConsumer",
    "ConsumerSpec",
    "ConsumerStats",
    "ConsumerStatsCollector",
    "Outcome",
    "PerMessageConsumer",
    "TransientError",
    "Verdict",
    "dead_letter",
]
