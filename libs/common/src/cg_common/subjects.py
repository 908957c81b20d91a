"""NATS subjects and JetStream streams: the names every service and outside system agrees on.

Facts are past tense (`cost.recorded`), requests are nouns (`probe.request`).
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.js.api import RetentionPolicy, StorageType, StreamConfig

USAGE = "cg.usage"  # cg.usage.<source>…: usage reported by any system
USAGE_ALL = "cg.usage.>"
USAGE_HTTP = "cg.usage.http"  # what the api publishes for POST /usage/events
PROBE_REQUEST = "cg.probe.request"  # cg.probe.request.<key_id>: per key, so a deleted key's requests can be purged
PROBE_RESULT = "cg.probe.result"  # cg.probe.result.<key_id>
COST_RECORDED = "cg.cost.recorded"  # cg.cost.recorded.<provider>
COST_BATCH_RECORDED = "cg.cost.batch.recorded"  # core NATS, no stream: one notice per ledger batch that recorded usage
DLQ = "cg.dlq"  # cg.dlq.<what>: rejected input with the reason
BILLING = "cg.billing"  # cg.billing.<provider>.costs: what a provider billed, as its own reports say
ALERT_BUDGET = "cg.alert.budget"  # a budget alert (contract section 8), Nats-Msg-Id = the alert's id
ALERT_ALL = "cg.alert.>"
BUDGET_ADMIT = "cg.budget.admit"  # core request-reply: admission for systems that speak NATS (contract section 9)
WEBHOOK_TEST = "cg.webhook.test"  # core request-reply: the api asks the notifier to send a test delivery now

DAY = 86_400.0


@dataclass(frozen=True)
class StreamSpec:
    """A stream's fixed shape; replica count and de-duplication window come from settings at run time."""

    name: str
    subjects: tuple[str, ...]
    retention: RetentionPolicy = RetentionPolicy.LIMITS
    max_age_secs: float = 7 * DAY
    duplicate_window_secs: float = 120.0

    def config(self, *, replicas: int, duplicate_window_secs: float | None = None) -> StreamConfig:
        return StreamConfig(
            name=self.name,
            subjects=list(self.subjects),
            retention=self.retention,
            storage=StorageType.FILE,
            num_replicas=replicas,
            max_age=self.max_age_secs,
            duplicate_window=duplicate_window_secs or self.duplicate_window_secs,
        )


USAGE_STREAM = StreamSpec("CG_USAGE", (USAGE_ALL,))
PROBE_REQUEST_STREAM = StreamSpec(
    "CG_PROBE_REQUESTS", (f"{PROBE_REQUEST}.>",), retention=RetentionPolicy.WORK_QUEUE, max_age_secs=DAY
)
PROBE_RESULT_STREAM = StreamSpec("CG_PROBE_RESULTS", (f"{PROBE_RESULT}.>",))
COST_STREAM = StreamSpec("CG_COSTS", (f"{COST_RECORDED}.>",))
DLQ_STREAM = StreamSpec("CG_DLQ", (f"{DLQ}.>",), max_age_secs=30 * DAY)
BILLING_STREAM = StreamSpec("CG_BILLING", (f"{BILLING}.>",), max_age_secs=30 * DAY)
# A day's duplicate window: an alert published again after a crash, even hours later, is held once.
ALERT_STREAM = StreamSpec("CG_ALERTS", (ALERT_ALL,), max_age_secs=30 * DAY, duplicate_window_secs=DAY)

ALL_STREAMS = (
    USAGE_STREAM,
    PROBE_REQUEST_STREAM,
    PROBE_RESULT_STREAM,
    COST_STREAM,
    DLQ_STREAM,
    BILLING_STREAM,
    ALERT_STREAM,
)
